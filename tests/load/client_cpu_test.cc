// What echo-load reports of its own measuring: the latency from each
// message's actual send beside the one from its intended send (open loop),
// and whether the client itself was the limit (load/client_cpu.h).
#include "load/client_cpu.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "load/histogram.h"
#include "load/load_client.h"
#include "load/report.h"
#include "load/schedule.h"
#include "tests/load/delay_echo_server.h"

namespace troupe {
namespace {

using ::troupe::testing::DelayEchoServer;

LoadOptions OpenLoop(const Address& target, double rate) {
  LoadOptions options;
  options.target = target;
  options.connections = 2;
  options.threads = 1;
  options.rate = rate;
  options.duration = absl::Milliseconds(400);
  options.warmup = absl::ZeroDuration();
  return options;
}

// Lag values: `late` of `total` at 5 ms, the others at 20 us.
LatencyHistogram Lags(uint64_t late, uint64_t total) {
  LatencyHistogram h;
  h.RecordN(20'000, total - late);
  h.RecordN(5'000'000, late);
  return h;
}

TEST(ClientCpuTest, ABusyThreadIsSaturated) {
  const ClientLoad load = AssessClientLoad({0.12, 0.97}, LatencyHistogram(), /*open_loop=*/false);
  EXPECT_TRUE(load.saturated);
  EXPECT_TRUE(load.cpu_saturated);
  EXPECT_FALSE(load.lag_saturated);
  EXPECT_EQ(load.busiest_thread, 1);
  EXPECT_DOUBLE_EQ(load.busiest_busy, 0.97);
  const std::string warning = FormatClientWarning(load);
  EXPECT_TRUE(absl::StrContains(warning, "echo-load: warning: client thread 1 was 97% busy"))
      << warning;
  EXPECT_TRUE(absl::StrContains(warning, "add --threads")) << warning;
}

TEST(ClientCpuTest, ThreadsWithTimeToSpareAreNot) {
  const ClientLoad load = AssessClientLoad({0.5, 0.89}, Lags(5, 100), /*open_loop=*/true);
  EXPECT_FALSE(load.saturated);
  EXPECT_EQ(load.busiest_thread, 1);
  EXPECT_EQ(FormatClientWarning(load), "");
  EXPECT_EQ(load.send_lag_ns.count(), 100u);
}

TEST(ClientCpuTest, AScheduleBehindOnATenthOfTheMessagesIsSaturated) {
  const ClientLoad behind = AssessClientLoad({0.3}, Lags(11, 100), /*open_loop=*/true);
  EXPECT_TRUE(behind.saturated);
  EXPECT_TRUE(behind.lag_saturated);
  EXPECT_FALSE(behind.cpu_saturated);
  const std::string warning = FormatClientWarning(behind);
  EXPECT_TRUE(absl::StrContains(warning, "11% of its messages over 1 ms late")) << warning;
  EXPECT_TRUE(absl::StrContains(warning, "the machine is busy")) << warning;
  EXPECT_FALSE(AssessClientLoad({0.3}, Lags(9, 100), /*open_loop=*/true).saturated);
  // The closed loop has no schedule: whatever lag is passed is not its.
  EXPECT_FALSE(AssessClientLoad({0.3}, Lags(50, 100), /*open_loop=*/false).saturated);
}

TEST(ClientCpuTest, NoThreadMeasuredIsNotSaturated) {
  const ClientLoad load = AssessClientLoad({}, LatencyHistogram(), /*open_loop=*/true);
  EXPECT_FALSE(load.saturated);
  EXPECT_EQ(load.busiest_thread, -1);
  // -1: a thread not measured, which is never the busiest.
  const ClientLoad unmeasured = AssessClientLoad({-1, 0.2, -1}, LatencyHistogram(), false);
  EXPECT_EQ(unmeasured.busiest_thread, 1);
  EXPECT_FALSE(AssessClientLoad({-1}, LatencyHistogram(), false).saturated);
  EXPECT_EQ(AssessClientLoad({-1}, LatencyHistogram(), false).busiest_thread, -1);
}

TEST(ClientCpuTest, WindowTellsASpinningThreadFromAWaitingOne) {
  ThreadCpuWindow spinning;
  spinning.Start(load::MonotonicNanos());
  const int64_t cpu_start = ThreadCpuNanos();
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (ThreadCpuNanos() - cpu_start < 30'000'000 && absl::Now() < give_up) {
  }
  spinning.Stop(load::MonotonicNanos());

  // Waiting is what is measured here, not a synchronisation: nothing
  // notifies the condition.
  ThreadCpuWindow waiting;
  waiting.Start(load::MonotonicNanos());
  std::mutex mu;
  std::condition_variable never;
  {
    std::unique_lock<std::mutex> lock(mu);
    never.wait_for(lock, std::chrono::milliseconds(30), [] { return false; });
  }
  waiting.Stop(load::MonotonicNanos());

  EXPECT_GT(spinning.busy(), 0.2);
  EXPECT_LE(spinning.busy(), 1.0);
  EXPECT_LT(waiting.busy(), 0.1);
  EXPECT_GT(spinning.busy(), waiting.busy());
}

TEST(ClientCpuTest, OpenLoopReportsBothLatenciesActualNeverAboveIntended) {
  DelayEchoServer server(absl::ZeroDuration());
  const absl::StatusOr<LoadReport> report = RunLoad(OpenLoop(server.address(), 1000));
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->ok()) << FormatReportText(*report);
  ASSERT_GT(report->messages, 0u);
  EXPECT_EQ(report->latency_ns.count(), report->messages);
  EXPECT_EQ(report->latency_actual_ns.count(), report->messages);
  EXPECT_EQ(&report->actual_latency(), &report->latency_actual_ns);
  for (const double p : {0.0, 50.0, 90.0, 99.0, 99.9, 100.0}) {
    EXPECT_LE(report->latency_actual_ns.ValueAtPercentile(p),
              report->latency_ns.ValueAtPercentile(p))
        << "p" << p;
  }
  EXPECT_LE(report->latency_actual_ns.mean(), report->latency_ns.mean());
  // The send lag covers the scheduled messages of the window (give or take
  // the few an echo issued before the loop's last turn reached them).
  EXPECT_GE(report->client.send_lag_ns.count() + 10, report->messages);
  EXPECT_EQ(report->client.thread_busy.size(), 1u);

  const std::string json = FormatReportJson(*report);
  EXPECT_TRUE(absl::StrContains(json, "\"latency_actual_us\":{\"p50\":")) << json;
  EXPECT_TRUE(absl::StrContains(json, "\"client\":{\"threads\":1,\"busiest_thread\":0,")) << json;
  EXPECT_TRUE(absl::StrContains(json, "\"send_lag_us\":{\"p50\":")) << json;
  const std::string text = FormatReportText(*report);
  EXPECT_TRUE(absl::StrContains(text, "\nlatency (us)  p50 ")) << text;
  EXPECT_TRUE(absl::StrContains(text, "\nactual (us)   p50 ")) << text;
  EXPECT_TRUE(absl::StrContains(text, "\nclient        busiest thread 0 of 1 at ")) << text;
  const std::vector<std::string> csv = absl::StrSplit(FormatReportCsv(*report), '\n');
  ASSERT_GE(csv.size(), 2u);
  for (const char* column : {"latency_actual_us_p99", "latency_actual_us_count", "client_saturated",
                             "client_busiest_thread_cpu", "send_lag_us_p99"}) {
    EXPECT_TRUE(absl::StrContains(csv[0], column)) << column;
  }
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(csv[0], ',')).size(),
            std::vector<std::string>(absl::StrSplit(csv[1], ',')).size());
}

TEST(ClientCpuTest, ActualLatencyLeavesOutTheWaitForAFullWindow) {
  // One connection, one message in flight, a server that takes 10 ms: at
  // 200 msg/s each message waits behind the one before it, so its intended
  // latency grows through the run while its actual one stays near 10 ms.
  DelayEchoServer server(absl::Milliseconds(10));
  LoadOptions options = OpenLoop(server.address(), 200);
  options.connections = 1;
  const absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->ok()) << FormatReportText(*report);
  const LatencyHistogram& intended = report->latency_ns;
  const LatencyHistogram& actual = report->latency_actual_ns;
  ASSERT_GT(actual.count(), 5u);
  EXPECT_GE(actual.min(), 10'000'000u);
  // Each message waited for the one before: by the end, half the run.
  EXPECT_GT(intended.ValueAtPercentile(99), 100'000'000u) << FormatReportText(*report);
  EXPECT_LT(actual.ValueAtPercentile(99), intended.ValueAtPercentile(99) / 4)
      << FormatReportText(*report);
  // The window, not the client, held them: the client kept its schedule.
  EXPECT_FALSE(report->client.cpu_saturated) << FormatReportText(*report);
}

TEST(ClientCpuTest, ClosedLoopHasOneLatencyReportedTwice) {
  DelayEchoServer server(absl::ZeroDuration());
  LoadOptions options = OpenLoop(server.address(), 0);
  const absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->ok()) << FormatReportText(*report);
  EXPECT_EQ(report->latency_actual_ns.count(), 0u);
  EXPECT_EQ(&report->actual_latency(), &report->latency_ns);
  EXPECT_EQ(report->client.send_lag_ns.count(), 0u);
  EXPECT_FALSE(report->client.lag_saturated);
  const std::string json = FormatReportJson(*report);
  const size_t intended = json.find("\"latency_us\":{");
  const size_t actual = json.find("\"latency_actual_us\":{");
  ASSERT_NE(intended, std::string::npos);
  ASSERT_NE(actual, std::string::npos);
  const auto object = [&](size_t at) {
    const size_t open = json.find('{', at);
    return json.substr(open, json.find('}', open) - open);
  };
  EXPECT_EQ(object(intended), object(actual)) << json;
  EXPECT_FALSE(absl::StrContains(FormatReportText(*report), "actual (us)"));
}

TEST(ClientCpuTest, ARateTheClientCannotIssueIsSaturated) {
  DelayEchoServer server(absl::ZeroDuration());
  // A billion messages a second: the schedule runs away from the loop at
  // once, whatever the machine.
  LoadOptions options = OpenLoop(server.address(), 1e9);
  options.connections = 1;
  options.duration = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  const absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  // It still ends on time: the loop takes the schedule a slice at a time,
  // so its last turn cannot run far past the window.
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_LT(report->measured, options.duration + absl::Milliseconds(150))
      << FormatReportText(*report);
  EXPECT_TRUE(report->client.saturated) << FormatReportText(*report);
  EXPECT_TRUE(report->client.lag_saturated) << FormatReportText(*report);
  EXPECT_TRUE(absl::StrContains(FormatReportJson(*report), "\"saturated\":true"));
  EXPECT_TRUE(absl::StrContains(FormatClientWarning(report->client), "echo-load: warning: "));
  EXPECT_TRUE(absl::StrContains(FormatReportText(*report), "SATURATED"));
}

TEST(ClientCpuTest, ALightRunIsNotSaturated) {
  DelayEchoServer server(absl::ZeroDuration());
  // A thread preempted on a busy machine legitimately falls behind (and is
  // reported so), so one clean run in three is the claim; a detector that
  // always says saturated fails all three. The CPU test holds every time:
  // 200 messages a second cannot keep a thread 90% busy.
  bool clean = false;
  for (int attempt = 0; attempt < 3 && !clean; ++attempt) {
    const absl::StatusOr<LoadReport> report = RunLoad(OpenLoop(server.address(), 200));
    ASSERT_TRUE(report.ok()) << report.status();
    ASSERT_TRUE(report->ok()) << FormatReportText(*report);
    EXPECT_FALSE(report->client.cpu_saturated) << FormatReportText(*report);
    EXPECT_LT(report->client.busiest_busy, kSaturatedBusy);
    clean = !report->client.saturated;
    if (clean) {
      EXPECT_EQ(FormatClientWarning(report->client), "");
      EXPECT_TRUE(absl::StrContains(FormatReportJson(*report), "\"saturated\":false"));
    }
  }
  EXPECT_TRUE(clean);
}

}  // namespace
}  // namespace troupe
