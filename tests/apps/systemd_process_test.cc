// echo-cluster under systemd, without systemd: the test plays its part.
// Type=notify: a Unix datagram socket named by NOTIFY_SOCKET receives
// READY=1 + STATUS=, STOPPING=1 and WATCHDOG=1. Socket activation: a socket
// the test bound and listens on is passed as fd 3 with LISTEN_FDS=1 and
// LISTEN_PID = the child's pid (set by `sh -c 'LISTEN_PID=$$ exec "$@"'`,
// since the pid is known only once the child runs).
#include <signal.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/net/socket.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/notify_socket.h"
#include "tests/support/subprocess.h"

namespace troupe {
namespace {

using ::troupe::testing::BinPath;
using ::troupe::testing::NotifySocket;
using ::troupe::testing::Subprocess;

constexpr absl::Duration kTimeout = absl::Seconds(30);

// Starts `argv` and reads the port from "echo-cluster listening on H:P with".
struct Started {
  std::unique_ptr<Subprocess> process;
  int port = 0;
};
Started StartCluster(const std::vector<std::string>& argv, const Subprocess::Options& options) {
  Started s;
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(argv, options);
  if (!p.ok()) {
    ADD_FAILURE() << p.status();
    return s;
  }
  s.process = *std::move(p);
  s.port = testing::ReadListeningPort(*s.process, kTimeout);
  return s;
}

// One connection: sends `text`, expects it back, within 10 s.
bool Echoes(int port, const std::string& text) {
  absl::StatusOr<Fd> fd =
      ConnectTcpBlocking(*Address::FromHostPort("127.0.0.1", static_cast<uint16_t>(port)));
  if (!fd.ok()) return false;
  timeval tv{10, 0};
  ::setsockopt(fd->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (::send(fd->get(), text.data(), text.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(text.size())) {
    return false;
  }
  std::string got;
  char buf[256];
  while (got.size() < text.size()) {
    const ssize_t n = ::recv(fd->get(), buf, sizeof(buf), 0);
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
  }
  return got == text;
}

void StopAndExpectZero(Subprocess& p) {
  ASSERT_TRUE(p.Signal(SIGTERM).ok());
  absl::StatusOr<int> code = p.Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

TEST(SystemdProcessTest, NotifiesReadyWithTheAddressThenStoppingOnSigterm) {
  NotifySocket notify;
  ASSERT_TRUE(notify.ok());
  Subprocess::Options options;
  options.env = {notify.env()};
  Started cluster = StartCluster({BinPath("echo-cluster"), "--port=0", "--workers=2"}, options);
  ASSERT_GT(cluster.port, 0);
  absl::StatusOr<std::string> ready = notify.WaitFor("READY=1", kTimeout);
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_TRUE(absl::StrContains(
      *ready, absl::StrCat("STATUS=serving on 127.0.0.1:", cluster.port, " with 2 workers")))
      << *ready;
  // READY=1 means it serves.
  EXPECT_TRUE(Echoes(cluster.port, "after ready\n"));
  ASSERT_TRUE(cluster.process->Signal(SIGTERM).ok());
  absl::StatusOr<std::string> stopping = notify.WaitFor("STOPPING=1", kTimeout);
  ASSERT_TRUE(stopping.ok()) << stopping.status();
  absl::StatusOr<int> code = cluster.process->Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

TEST(SystemdProcessTest, PingsTheWatchdogAtHalfTheInterval) {
  NotifySocket notify;
  ASSERT_TRUE(notify.ok());
  Subprocess::Options options;
  // 200 ms: a ping every 100 ms. WATCHDOG_PID is left unset (any pid).
  options.env = {notify.env(), "WATCHDOG_USEC=200000"};
  Started cluster = StartCluster({BinPath("echo-cluster"), "--port=0", "--workers=2"}, options);
  ASSERT_GT(cluster.port, 0);
  ASSERT_TRUE(notify.WaitFor("READY=1", kTimeout).ok());
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::string> ping = notify.WaitFor("WATCHDOG=1", kTimeout);
    ASSERT_TRUE(ping.ok()) << "ping " << i << ": " << ping.status();
  }
  StopAndExpectZero(*cluster.process);
}

TEST(SystemdProcessTest, WithoutNotifySocketWatchdogVariablesDoNothing) {
  // Not started by systemd (no NOTIFY_SOCKET): stray WATCHDOG_USEC must not
  // make it send anything, or fail.
  Subprocess::Options options;
  options.env = {"NOTIFY_SOCKET=", "WATCHDOG_USEC=200000"};
  Started cluster = StartCluster({BinPath("echo-cluster"), "--port=0", "--workers=1"}, options);
  ASSERT_GT(cluster.port, 0);
  EXPECT_TRUE(Echoes(cluster.port, "plain\n"));
  StopAndExpectZero(*cluster.process);
}

// `sh -c` sets LISTEN_PID to its own pid, which exec hands to echo-cluster.
std::vector<std::string> ViaShell(const std::string& script, std::vector<std::string> argv) {
  std::vector<std::string> args = {"/bin/sh", "-c", script, "sh"};
  args.insert(args.end(), argv.begin(), argv.end());
  return args;
}

TEST(SystemdProcessTest, ServesOnTheSocketSystemdPassedWithoutBinding) {
  absl::StatusOr<Fd> listener = ListenTcp(*Address::Parse("127.0.0.1:0"));
  ASSERT_TRUE(listener.ok()) << listener.status();
  const int port = LocalAddress(listener->get())->port();
  Subprocess::Options options;
  options.fd3 = listener->get();
  options.env = {"LISTEN_FDS=1"};
  // --port=1: were it bound, the line below would not name `port`.
  Started cluster = StartCluster(
      ViaShell("LISTEN_PID=$$ exec \"$@\"", {BinPath("echo-cluster"), "--port=1", "--workers=2"}),
      options);
  ASSERT_EQ(cluster.port, port);
  // Only the child's copy is left: it alone accepts.
  listener->Reset();
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(Echoes(port, absl::StrCat("activated ", i, "\n")));
  StopAndExpectZero(*cluster.process);
  absl::StatusOr<std::string> err = cluster.process->ReadAllStderr(kTimeout);
  ASSERT_TRUE(err.ok());
  EXPECT_TRUE(absl::StrContains(*err, "using the socket systemd passed (fd 3)")) << *err;
}

TEST(SystemdProcessTest, TwoPassedSocketsExitOneSayingSo) {
  absl::StatusOr<Fd> listener = ListenTcp(*Address::Parse("127.0.0.1:0"));
  ASSERT_TRUE(listener.ok()) << listener.status();
  Subprocess::Options options;
  options.fd3 = listener->get();
  options.env = {"LISTEN_FDS=2"};
  options.stderr_mode = Subprocess::Stderr::kMergeIntoStdout;
  // fd 4: a second copy, as if the .socket unit had two ListenStream=.
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(
      ViaShell("LISTEN_PID=$$ exec \"$@\" 4<&3", {BinPath("echo-cluster"), "--port=0"}), options);
  ASSERT_TRUE(p.ok()) << p.status();
  absl::StatusOr<std::string> out = (*p)->ReadAllStdout(kTimeout);
  absl::StatusOr<int> code = (*p)->Wait(kTimeout);
  ASSERT_TRUE(out.ok() && code.ok());
  EXPECT_EQ(*code, 1) << *out;
  EXPECT_TRUE(absl::StrContains(*out, "systemd passed 2 sockets")) << *out;
}

TEST(SystemdProcessTest, SocketsForAnotherPidAreNotOurs) {
  // LISTEN_PID names someone else: the variables are not for us, and
  // echo-cluster binds --port as usual.
  absl::StatusOr<Fd> listener = ListenTcp(*Address::Parse("127.0.0.1:0"));
  ASSERT_TRUE(listener.ok()) << listener.status();
  const int port = LocalAddress(listener->get())->port();
  Subprocess::Options options;
  options.fd3 = listener->get();
  options.env = {"LISTEN_FDS=1", "LISTEN_PID=1"};
  Started cluster = StartCluster({BinPath("echo-cluster"), "--port=0", "--workers=1"}, options);
  ASSERT_GT(cluster.port, 0);
  EXPECT_NE(cluster.port, port);
  EXPECT_TRUE(Echoes(cluster.port, "own port\n"));
  StopAndExpectZero(*cluster.process);
}

}  // namespace
}  // namespace troupe
