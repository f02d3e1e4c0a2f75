// DrainOnStopSignal (core/ops/signals.h) in-process: which stop requests cut
// a drain. The stop signals are blocked before any thread starts (the suite's
// set-up runs on the main thread, before the first server), so the signals
// the test sends itself are only ever taken by the waits under test.
#include "core/ops/signals.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/net/socket.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "tests/support/echo_handler.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using ::troupe::testing::WaitFor;

bool StopSignalPending() {
  sigset_t pending;
  sigemptyset(&pending);
  ::sigpending(&pending);
  return sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1;
}

// Reads from blocking `fd` until EOF (true), an error, or 20 s.
bool WaitForEof(int fd) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  char buf[64];
  while (absl::Now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
  }
  return false;
}

class DrainOnStopSignalTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { BlockStopSignals(); }
  void TearDown() override {
    // A signal no wait took (a failed expectation) must not reach the next test.
    while (WaitForStopSignalFor(0) != 0) {
    }
  }

  // Starts a drain with `first` (RequestStop() or an external SIGTERM), then
  // sends `second` while it runs, then (with `third`) one more external
  // SIGTERM once the drain's wait took the second. Returns how many external
  // signals had been sent when the drain was cut (-1: never).
  int ExternalSignalsAtTheCut(bool first_is_request, bool second_is_request, bool third) {
    ServerOptions options;
    options.address = *Address::Parse("127.0.0.1:0");
    options.workers = 1;
    options.drain_timeout = absl::Seconds(30);
    // The client never closes: the drain lasts until it is cut.
    options.connection.linger_timeout = absl::Seconds(60);
    auto server = Server::Create(options, testing::EchoHandlerFactory());
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return -2;
    (*server)->Start();
    absl::StatusOr<Fd> client = ConnectTcpBlocking((*server)->address());
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return -2;

    std::atomic<int> externals{0};
    std::atomic<int> cut_at{-1};
    StopSignalHooks hooks;
    hooks.on_abort = [&] { cut_at.store(externals.load()); };
    std::atomic<int> first_sig{0};
    std::thread drainer([&] { first_sig.store(DrainOnStopSignal(**server, hooks)); });
    auto send = [&](bool request) {
      if (request) {
        RequestStop();
      } else {
        externals.fetch_add(1);
        ::kill(::getpid(), SIGTERM);
      }
    };
    send(first_is_request);
    EXPECT_TRUE(WaitForEof(client->get())) << "the drain never began";
    send(second_is_request);
    if (third) {
      // Taken by the drain's wait (and ignored) before the next one.
      EXPECT_TRUE(WaitFor([] { return !StopSignalPending(); }));
      send(false);
    }
    drainer.join();  // bounded by drain_timeout even if nothing cuts it
    EXPECT_EQ(first_sig.load(), first_is_request ? kStopRequested : SIGTERM);
    return cut_at.load();
  }
};

TEST_F(DrainOnStopSignalTest, RequestStopDuringASignalledDrainDoesNotCutIt) {
  // An operator's SIGTERM, then a takeover's RequestStop (the handoff thread
  // finishing just after): the drain goes on; the next SIGTERM cuts it.
  EXPECT_EQ(ExternalSignalsAtTheCut(/*first_is_request=*/false, /*second_is_request=*/true,
                                    /*third=*/true),
            2);
}

TEST_F(DrainOnStopSignalTest, OneSignalDuringARequestedDrainDoesNotCutIt) {
  // A takeover began the drain, then a deploy script SIGTERMs the old
  // process too: that is a first request, already being answered; only a
  // second external signal cuts.
  EXPECT_EQ(ExternalSignalsAtTheCut(/*first_is_request=*/true, /*second_is_request=*/false,
                                    /*third=*/true),
            2);
}

TEST_F(DrainOnStopSignalTest, SecondExternalSignalCutsTheDrain) {
  // SIGTERM, SIGTERM: the second cuts.
  EXPECT_EQ(ExternalSignalsAtTheCut(/*first_is_request=*/false, /*second_is_request=*/false,
                                    /*third=*/false),
            2);
}

}  // namespace
}  // namespace troupe
