// LoadOptions::churn in-process (load/churn.h): cycles of connect, one
// message, echo, close against troupe's own echo actor, and the errors of a
// server that hangs up, corrupts, hangs or is not there.
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "actors/builtin.h"
#include "core/base/fd.h"
#include "core/net/socket.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "load/framing.h"
#include "load/load_client.h"
#include "load/report.h"
#include "tests/support/faulty_echo_server.h"
#include "tests/support/start_server.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using ::troupe::testing::EchoFaultPlan;
using ::troupe::testing::FaultyEchoServer;
using ::troupe::testing::WaitFor;

std::unique_ptr<Server> StartEchoServer(const std::string& codec) {
  BuiltinOptions builtin;
  builtin.mode = "echo";
  builtin.codec = codec;
  absl::StatusOr<HandlerFactory> factory = MakeBuiltinFactory(builtin);
  EXPECT_TRUE(factory.ok()) << factory.status();
  if (!factory.ok()) return nullptr;
  ServerOptions options;
  options.workers = 2;
  return ::troupe::testing::StartServer(options, *std::move(factory));
}

LoadOptions ChurnRun(const Address& target) {
  LoadOptions options;
  options.target = target;
  options.churn = true;
  options.connections = 4;
  options.threads = 2;
  options.message_size = 100;
  options.warmup = absl::Milliseconds(100);
  options.duration = absl::Milliseconds(500);
  return options;
}

// The server's connections are all closed again: every cycle's close went
// through on both sides.
bool AllClosed(const Server& server) { return server.Stats().Total().open == 0; }

TEST(LoadChurnTest, CyclesAgainstAnEchoServerHaveNoErrors) {
  const int fds_before = ::troupe::testing::CountOpenFds();
  {
    std::unique_ptr<Server> server = StartEchoServer("");
    ASSERT_NE(server, nullptr);
    absl::StatusOr<LoadReport> report = RunLoad(ChurnRun(server->address()));
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->ok()) << FormatReportText(*report);
    EXPECT_TRUE(report->churn);
    // Several cycles per slot: each connection closed and the next opened.
    EXPECT_GT(report->messages, 4u * 4);
    EXPECT_EQ(report->latency_ns.count(), report->messages);
    EXPECT_EQ(report->bytes, report->messages * 100);
    // Warmup and drained cycles connected too, but are not measured.
    EXPECT_GE(report->churn_connects, report->messages);
    EXPECT_EQ(report->churn_connect_failures, 0u);
    EXPECT_EQ(report->connections_established, 0);  // No connect phase.
    EXPECT_TRUE(WaitFor([&] { return AllClosed(*server); }, absl::Seconds(5)));
    const std::string text = FormatReportText(*report);
    EXPECT_TRUE(absl::StrContains(text, "conn/s: connect, echo, close")) << text;
    EXPECT_TRUE(absl::StrContains(text, "closed by FIN")) << text;
    const std::string json = FormatReportJson(*report);
    EXPECT_TRUE(absl::StrContains(json, "\"mode\":\"churn\"")) << json;
    EXPECT_TRUE(absl::StrContains(json, "\"churn\":true")) << json;
    const std::string csv = FormatReportCsv(*report);
    EXPECT_TRUE(
        absl::StrContains(csv, ",framing,churn,churn_close,churn_connects,churn_connections_per_s"))
        << csv;
  }
  EXPECT_EQ(::troupe::testing::CountOpenFds(), fds_before);
}

TEST(LoadChurnTest, FramedCyclesAgainstTheCodecsHaveNoErrors) {
  for (const auto& [codec, framing] :
       {std::pair{"lines", LoadFraming::kLines}, std::pair{"length", LoadFraming::kLength}}) {
    std::unique_ptr<Server> server = StartEchoServer(codec);
    ASSERT_NE(server, nullptr);
    LoadOptions options = ChurnRun(server->address());
    options.framing = framing;
    absl::StatusOr<LoadReport> report = RunLoad(options);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->ok()) << codec << "\n" << FormatReportText(*report);
    EXPECT_GT(report->messages, 4u) << codec;
  }
}

TEST(LoadChurnTest, ResetClosesHaveNoErrors) {
  std::unique_ptr<Server> server = StartEchoServer("");
  ASSERT_NE(server, nullptr);
  LoadOptions options = ChurnRun(server->address());
  options.churn_close = LoadOptions::ChurnClose::kReset;
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << FormatReportText(*report);
  EXPECT_GT(report->messages, 4u);
  EXPECT_TRUE(WaitFor([&] { return AllClosed(*server); }, absl::Seconds(5)));
  EXPECT_TRUE(absl::StrContains(FormatReportText(*report), "closed by reset"));
}

TEST(LoadChurnTest, AServerThatClosesWithoutEchoingIsAnErrorEveryCycle) {
  FaultyEchoServer server({.close_at = 0});
  LoadOptions options = ChurnRun(server.address());
  options.warmup = absl::ZeroDuration();
  options.duration = absl::Milliseconds(200);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->ok());
  EXPECT_EQ(report->messages, 0u);
  EXPECT_TRUE(report->no_messages);
  // Every cycle connected, lost its echo and went on with the next.
  EXPECT_GT(report->connections_lost, 4u);
  EXPECT_EQ(report->verification_errors, 0u);
  EXPECT_EQ(report->churn_connects, report->connections_lost);
  ASSERT_FALSE(report->first_errors.empty());
  EXPECT_TRUE(absl::StrContains(report->first_errors[0], "no connection cycle completed"))
      << report->first_errors[0];
  EXPECT_TRUE(absl::StrContains(report->first_errors[1],
                                "lost after 0 of 100 bytes echoed: peer closed the connection"))
      << report->first_errors[1];
}

TEST(LoadChurnTest, AWrongByteIsAVerificationErrorEveryCycle) {
  FaultyEchoServer server({.corrupt_at = 42});
  LoadOptions options = ChurnRun(server.address());
  options.warmup = absl::ZeroDuration();
  options.duration = absl::Milliseconds(200);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->messages, 0u);
  EXPECT_GT(report->verification_errors, 4u);
  EXPECT_EQ(report->connections_lost, 0u);
  ASSERT_GE(report->first_errors.size(), 2u);
  EXPECT_TRUE(absl::StrContains(report->first_errors[1], "echo mismatch at stream offset 42"))
      << report->first_errors[1];
}

TEST(LoadChurnTest, AServerThatHangsIsStalled) {
  FaultyEchoServer server({.silent = true});
  LoadOptions options = ChurnRun(server.address());
  options.connections = 2;
  options.warmup = absl::ZeroDuration();
  options.duration = absl::Milliseconds(500);
  options.stall_timeout = absl::Milliseconds(100);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->messages, 0u);
  // Each slot stalls, closes and tries again, every 100-125 ms.
  EXPECT_GE(report->connections_stalled, 2u);
  ASSERT_GE(report->first_errors.size(), 2u);
  EXPECT_TRUE(absl::StrContains(report->first_errors[1],
                                "no byte received in 100ms with 0 of 100 sent bytes echoed"))
      << report->first_errors[1];
}

TEST(LoadChurnTest, NothingListeningIsUnavailable) {
  // A bound socket that does not listen: connects to it are refused.
  Fd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(holder.valid());
  const Address any = *Address::FromHostPort("127.0.0.1", 0);
  ASSERT_EQ(::bind(holder.get(), any.sockaddr_ptr(), any.length()), 0);
  LoadOptions options = ChurnRun(*LocalAddress(holder.get()));
  options.warmup = absl::ZeroDuration();
  options.duration = absl::Milliseconds(100);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(report.status().message(), "refused")) << report.status();
}

TEST(LoadChurnTest, ImpossibleCombinationsAreRejected) {
  LoadOptions good = ChurnRun(*Address::FromHostPort("127.0.0.1", 9));
  EXPECT_TRUE(ValidateLoadOptions(good).ok());
  auto expect_invalid = [&](auto mutate, absl::string_view says) {
    LoadOptions o = good;
    mutate(o);
    const absl::Status s = ValidateLoadOptions(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), says)) << s;
  };
  expect_invalid([](LoadOptions& o) { o.messages = {"a"}; }, "churn does not apply");
  expect_invalid([](LoadOptions& o) { o.rate = 100; }, "no fixed rate");
  expect_invalid([](LoadOptions& o) { o.reconnect = true; }, "reconnect does not apply");
  expect_invalid(
      [](LoadOptions& o) {
        o.tls = true;
        o.tls_insecure = true;
      },
      "churn does not speak TLS");
  expect_invalid([](LoadOptions& o) { o.pipeline = 2; }, "pipeline must be 1");
  expect_invalid(
      [](LoadOptions& o) {
        o.churn = false;
        o.churn_close = LoadOptions::ChurnClose::kReset;
      },
      "needs churn");
}

}  // namespace
}  // namespace troupe
