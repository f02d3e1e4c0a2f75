// The drain in the order a load balancer needs (Server::Stop): the health
// check fails first, accepting goes on for the grace, then stops, then the
// connections drain. Checked over real loopback sockets: /healthz, the
// HAProxy agent-check port, and fresh connects during each step.
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "core/ops/metrics_server.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "tests/support/echo_handler.h"
#include "tests/support/line_client.h"
#include "tests/support/sync.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using ::troupe::testing::LineClient;
using ::troupe::testing::WaitFor;

struct Node {
  std::unique_ptr<Server> server;
  std::unique_ptr<MetricsServer> metrics;
};

Node Start(absl::Duration grace) {
  Node n;
  ServerOptions options;
  options.address = *Address::Parse("127.0.0.1:0");
  options.workers = 2;
  options.drain_grace = grace;
  n.server = std::move(Server::Create(options, testing::EchoHandlerFactory()).value());
  MetricsServerOptions metrics_options;
  metrics_options.agent_address = *Address::Parse("127.0.0.1:0");
  n.metrics = std::move(MetricsServer::Create(*Address::Parse("127.0.0.1:0"), n.server.get(),
                                              std::move(metrics_options))
                            .value());
  n.server->Start();
  n.metrics->Start();
  return n;
}

// Everything `address` sends after `request`, until it closes.
std::string ReadAll(const Address& address, const std::string& request) {
  return testing::RequestUntilEof(address, request);
}

std::string Healthz(const Node& n) {
  return ReadAll(n.metrics->address(), "GET /healthz HTTP/1.1\r\n\r\n");
}
std::string Agent(const Node& n) { return ReadAll(*n.metrics->agent_address(), ""); }

// A fresh connection that echoes: the server still accepts.
bool Echoes(const Server& server) {
  LineClient client(server.address());
  if (!client.connected() || !client.Send("ping\n")) return false;
  return client.ReadLine(absl::Seconds(10)) == "ping";
}

TEST(DrainOrderTest, TheHealthCheckFailsFirstAndAcceptingGoesOnForTheGrace) {
  Node n = Start(absl::Seconds(3));
  EXPECT_TRUE(absl::StartsWith(Healthz(n), "HTTP/1.1 200 OK"));
  EXPECT_TRUE(absl::StartsWith(Agent(n), "up ready ")) << Agent(n);
  testing::Notification stopped;
  std::thread stopper([&] {
    n.server->Stop();
    stopped.Notify();
  });
  ASSERT_TRUE(WaitFor([&] { return !n.server->serving(); }));
  // Within the grace: failing checks, but a new client is still served.
  const std::string health = Healthz(n);
  EXPECT_TRUE(absl::StartsWith(health, "HTTP/1.1 503")) << health;
  EXPECT_EQ(Agent(n), "drain\n");
  EXPECT_TRUE(n.server->accepting());
  EXPECT_TRUE(Echoes(*n.server));
  // After it: no more accepting, and the drain runs to the end.
  EXPECT_TRUE(stopped.WaitForNotificationWithTimeout(absl::Seconds(20)));
  stopper.join();
  EXPECT_FALSE(n.server->accepting());
  EXPECT_FALSE(LineClient(n.server->address()).connected());
}

TEST(DrainOrderTest, WithoutAGraceAcceptingStopsAtOnce) {
  Node n = Start(absl::ZeroDuration());
  const absl::Time begin = absl::Now();
  n.server->Stop();
  EXPECT_LT(absl::Now() - begin, absl::Seconds(2));
  EXPECT_FALSE(LineClient(n.server->address()).connected());
}

TEST(DrainOrderTest, AbortCutsTheGraceShort) {
  Node n = Start(absl::Seconds(60));
  const absl::Time begin = absl::Now();
  std::thread stopper([&] { n.server->Stop(); });
  ASSERT_TRUE(WaitFor([&] { return !n.server->serving(); }));
  n.server->Abort();
  n.server->Abort();  // a third signal is harmless
  stopper.join();
  EXPECT_LT(absl::Now() - begin, absl::Seconds(20));
  EXPECT_FALSE(n.server->accepting());
}

TEST(DrainOrderTest, TheAgentWeightFollowsTheLoad) {
  EXPECT_EQ(AgentWeightPercent(0.0), 100);
  EXPECT_EQ(AgentWeightPercent(0.25), 75);
  EXPECT_EQ(AgentWeightPercent(1.0), 1);  // never 0: that is "drain"
  EXPECT_EQ(AgentWeightPercent(7.0), 1);
  EXPECT_EQ(AgentWeightPercent(-1.0), 100);
  // An idle server reports (nearly) full weight, as a line HAProxy parses.
  Node n = Start(absl::ZeroDuration());
  absl::SleepFor(absl::Milliseconds(300));  // past the minimum sample
  const std::string line = Agent(n);
  ASSERT_TRUE(absl::StartsWith(line, "up ready ")) << line;
  ASSERT_TRUE(absl::EndsWith(line, "%\n")) << line;
  int weight = 0;
  ASSERT_TRUE(absl::SimpleAtoi(line.substr(9, line.size() - 11), &weight)) << line;
  EXPECT_GE(weight, 50);
  EXPECT_LE(weight, 100);
}

}  // namespace
}  // namespace troupe
