// SystemdNotifier in-process (core/ops/systemd.h): the test is systemd's
// notify socket. The watchdog pings only while every reactor runs tasks: a
// wedged reactor stops the pings, and they resume when it does.
#include "core/ops/systemd.h"

#include <stdlib.h>

#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "tests/support/echo_handler.h"
#include "tests/support/notify_socket.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using testing::EchoHandlerFactory;
using testing::NotifySocket;
using testing::WaitFor;

constexpr absl::Duration kTimeout = absl::Seconds(20);

// Sets an environment variable for one test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { ::unsetenv(name_); }

 private:
  const char* name_;
};

std::unique_ptr<Server> StartServer(int workers) {
  ServerOptions options;
  options.address = *Address::Parse("127.0.0.1:0");
  options.workers = workers;
  auto server = Server::Create(options, EchoHandlerFactory());
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  (*server)->Start();
  return std::move(*server);
}

TEST(SystemdNotifierTest, WithoutNotifySocketEverythingIsANoOp) {
  ::unsetenv("NOTIFY_SOCKET");
  ScopedEnv watchdog("WATCHDOG_USEC", "100000");
  std::unique_ptr<Server> server = StartServer(1);
  ASSERT_NE(server, nullptr);
  SystemdNotifier notifier(*server);
  EXPECT_FALSE(notifier.enabled());
  EXPECT_EQ(notifier.watchdog_interval(), absl::ZeroDuration());
  notifier.Ready("x");
  notifier.Stopping("y");
  notifier.Stop();
  EXPECT_EQ(notifier.pings(), 0u);
  server->Stop();
}

TEST(SystemdNotifierTest, AWedgedReactorStopsThePingsUntilItRunsAgain) {
  NotifySocket notify;
  ASSERT_TRUE(notify.ok());
  ScopedEnv socket("NOTIFY_SOCKET", notify.path());
  ScopedEnv watchdog("WATCHDOG_USEC", "100000");  // a round every 50 ms
  std::unique_ptr<Server> server = StartServer(2);
  ASSERT_NE(server, nullptr);
  SystemdNotifier notifier(*server);
  ASSERT_TRUE(notifier.enabled());
  EXPECT_EQ(notifier.watchdog_interval(), absl::Milliseconds(100));
  notifier.Ready("serving");
  absl::StatusOr<std::string> ready = notify.WaitFor("READY=1", kTimeout);
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_NE(ready->find("STATUS=serving"), std::string::npos) << *ready;
  ASSERT_TRUE(notify.WaitFor("WATCHDOG=1", kTimeout).ok());

  // Reactor 1 blocks in a task (an actor that hangs, say).
  absl::Notification release;
  server->reactor(1).Post([&release] { release.WaitForNotificationWithTimeout(kTimeout); });
  // Once a round was skipped, no ping may follow while it stays wedged.
  ASSERT_TRUE(WaitFor([&] { return notifier.skipped() >= 1; }, kTimeout));
  const uint64_t pings = notifier.pings();
  ASSERT_TRUE(WaitFor([&] { return notifier.skipped() >= 4; }, kTimeout));
  EXPECT_EQ(notifier.pings(), pings) << "pinged while a reactor was wedged";

  release.Notify();
  ASSERT_TRUE(WaitFor([&] { return notifier.pings() > pings; }, kTimeout));
  notifier.Stopping("draining");
  ASSERT_TRUE(notify.WaitFor("STOPPING=1", kTimeout).ok());
  notifier.Stop();
  server->Stop();
}

}  // namespace
}  // namespace troupe
