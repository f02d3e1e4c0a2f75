// The knee search (load/find_rate.h): its bisection against a model server
// through the run_load seam, where every answer is known, then against a real
// server whose every echo takes a known time.
#include "load/find_rate.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "load/client_cpu.h"
#include "load/load_client.h"
#include "tests/load/delay_echo_server.h"

namespace troupe {
namespace {

using ::troupe::testing::DelayEchoServer;

// A server as the search sees it: the closed-loop probe gets `max` msg/s;
// an open-loop step gets what it asks (up to `max`), with a p99 of `fast` up
// to `knee` msg/s and `slow` above. Above `errors_above` a step has errors,
// above `saturated_above` the client is saturated.
struct ModelServer {
  double max = 10'000;
  double knee = 5'000;
  absl::Duration fast = absl::Microseconds(100);
  absl::Duration slow = absl::Milliseconds(10);
  double errors_above = 1e18;
  double saturated_above = 1e18;
  bool probe_errors = false;
  std::vector<double> asked;  // Each run's rate, the probe's 0 included.

  absl::StatusOr<LoadReport> Run(const LoadOptions& options) {
    asked.push_back(options.rate);
    LoadReport report;
    report.rate = options.rate;
    report.measured = options.duration;
    const double rate = options.rate == 0 ? max : std::min(options.rate, max);
    report.messages = static_cast<uint64_t>(rate * absl::ToDoubleSeconds(options.duration));
    const absl::Duration p99 = options.rate <= knee ? fast : slow;
    report.latency_ns.RecordN(static_cast<uint64_t>(absl::ToInt64Nanoseconds(p99)),
                              report.messages);
    const bool errors = options.rate == 0 ? probe_errors : options.rate > errors_above;
    if (errors) {
      report.verification_errors = 1;
      report.first_errors.push_back("connection 0: echo mismatch at stream offset 7");
    }
    const double busy = options.rate > saturated_above ? 0.97 : 0.3;
    report.client = AssessClientLoad({busy}, LatencyHistogram(), options.rate > 0);
    return report;
  }
};

FindRateOptions ModelOptions(ModelServer& server, absl::Duration bound) {
  FindRateOptions options;
  options.load.target = *Address::FromHostPort("127.0.0.1", 7007);
  options.p99_bound = bound;
  options.step_duration = absl::Seconds(1);
  options.run_load = [&server](const LoadOptions& o) { return server.Run(o); };
  return options;
}

TEST(FindRateTest, FindsTheKneeWithinTheBracket) {
  ModelServer server;
  std::vector<FindRateStep> seen;
  FindRateOptions options = ModelOptions(server, absl::Milliseconds(1));
  options.on_step = [&](const FindRateStep& step) { seen.push_back(step); };
  const absl::StatusOr<FindRateResult> result = FindRate(options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE(result->found) << FormatFindRateText(*result, options);
  EXPECT_LE(result->rate, server.knee);
  EXPECT_GE(result->rate, server.knee * (1 - kFindRateBracket));
  EXPECT_EQ(result->p99_bound_ns, 1'000'000u);
  // Probe, then 5000 (within), 7500, 6250, 5625, 5312.5, 5156.25 (all
  // over): the bracket [5000, 5156.25] is within 5%, two steps to spare.
  ASSERT_EQ(result->steps.size(), 7u) << FormatFindRateText(*result, options);
  EXPECT_EQ(seen.size(), result->steps.size());
  EXPECT_EQ(server.asked.front(), 0);
  EXPECT_EQ(result->steps[0].verdict, FindRateStep::Verdict::kProbe);
  EXPECT_DOUBLE_EQ(result->steps[0].rate_achieved, server.max);
  for (size_t i = 1; i < result->steps.size(); ++i) {
    const FindRateStep& step = result->steps[i];
    EXPECT_DOUBLE_EQ(step.rate_asked, server.asked[i]);
    EXPECT_EQ(step.passed(), step.rate_asked <= server.knee) << "step " << i;
    EXPECT_EQ(step.verdict, step.rate_asked <= server.knee ? FindRateStep::Verdict::kWithin
                                                           : FindRateStep::Verdict::kOverBound);
  }
}

TEST(FindRateTest, MaxStepsBoundsTheSearch) {
  ModelServer server;
  FindRateOptions options = ModelOptions(server, absl::Milliseconds(1));
  options.max_steps = 3;
  const absl::StatusOr<FindRateResult> result = FindRate(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->steps.size(), 4u);
  EXPECT_TRUE(result->found);  // 5000 passed; 7500 and 6250 did not.
  EXPECT_DOUBLE_EQ(result->rate, 5000);
}

TEST(FindRateTest, ABoundNoRateMeetsIsNotFound) {
  ModelServer server;
  // Every step's p99 is at least `fast`, 100 us.
  FindRateOptions options = ModelOptions(server, absl::Microseconds(50));
  const absl::StatusOr<FindRateResult> result = FindRate(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->found);
  EXPECT_EQ(result->rate, 0);
  ASSERT_EQ(result->steps.size(), 1u + 8u);
  // Each miss halves the rate: the last step is the lowest.
  for (size_t i = 2; i < result->steps.size(); ++i) {
    EXPECT_DOUBLE_EQ(result->steps[i].rate_asked, result->steps[i - 1].rate_asked / 2);
    EXPECT_EQ(result->steps[i].verdict, FindRateStep::Verdict::kOverBound);
  }
  const std::string text = FormatFindRateText(*result, options);
  EXPECT_TRUE(absl::StrContains(text, "find-rate     none: no rate tried kept p99 <= 50.0us"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "even 39.1 msg/s, the lowest, missed")) << text;
  EXPECT_TRUE(
      absl::StrContains(FormatFindRateJson(*result, options),
                        "\"find_rate\":{\"p99_bound_us\":50.0,\"found\":false,\"rate\":0.0"));
}

TEST(FindRateTest, StepsWithErrorsOrASaturatedClientDoNotPass) {
  ModelServer server;
  server.errors_above = 2'000;     // Latency fine, echoes wrong.
  server.saturated_above = 1'000;  // And the client at its limit.
  FindRateOptions options = ModelOptions(server, absl::Milliseconds(1));
  const absl::StatusOr<FindRateResult> result = FindRate(options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE(result->found) << FormatFindRateText(*result, options);
  EXPECT_LE(result->rate, 1'000);
  EXPECT_EQ(result->steps[1].verdict, FindRateStep::Verdict::kErrors);  // 5000
  EXPECT_EQ(result->steps[1].errors, 1u);
  EXPECT_TRUE(absl::StrContains(result->steps[1].first_error, "echo mismatch"));
  bool saw_saturated = false;
  for (const FindRateStep& step : result->steps) {
    if (step.verdict != FindRateStep::Verdict::kSaturated) continue;
    saw_saturated = true;
    EXPECT_GT(step.rate_asked, 1'000);
    EXPECT_LE(step.rate_asked, 2'000);
    EXPECT_TRUE(step.client_saturated);
  }
  EXPECT_TRUE(saw_saturated) << FormatFindRateText(*result, options);
  const std::string text = FormatFindRateText(*result, options);
  EXPECT_TRUE(absl::StrContains(text, "97% sat  saturated")) << text;
  EXPECT_TRUE(absl::StrContains(text, "errors")) << text;
  EXPECT_TRUE(absl::StrContains(text, "  step 1: connection 0: echo mismatch")) << text;
}

TEST(FindRateTest, AProbeWithErrorsEndsTheSearch) {
  ModelServer server;
  server.probe_errors = true;
  FindRateOptions options = ModelOptions(server, absl::Milliseconds(1));
  const absl::StatusOr<FindRateResult> result = FindRate(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->probe_failed);
  EXPECT_FALSE(result->found);
  EXPECT_EQ(result->steps.size(), 1u);
  EXPECT_EQ(server.asked.size(), 1u);
}

TEST(FindRateTest, ReportsEveryStep) {
  ModelServer server;
  FindRateOptions options = ModelOptions(server, absl::Milliseconds(1));
  options.max_steps = 2;
  const absl::StatusOr<FindRateResult> result = FindRate(options);
  ASSERT_TRUE(result.ok()) << result.status();
  const std::string json = FormatFindRateJson(*result, options);
  EXPECT_TRUE(absl::StartsWith(json, "{\"target\":\"127.0.0.1:7007\",\"connections\":100,"))
      << json;
  EXPECT_TRUE(absl::StrContains(
      json, "\"find_rate\":{\"p99_bound_us\":1000.0,\"found\":true,\"rate\":5000.0,"))
      << json;
  EXPECT_TRUE(absl::StrContains(json,
                                "\"steps\":[{\"step\":0,\"verdict\":\"probe\","
                                "\"rate_asked\":0.0,\"rate_achieved\":10000.0,"))
      << json;
  EXPECT_TRUE(absl::StrContains(json, "{\"step\":2,\"verdict\":\"over\",\"rate_asked\":7500.0,"))
      << json;
  EXPECT_TRUE(absl::EndsWith(json, "]}}\n")) << json;
  const std::vector<std::string> csv =
      absl::StrSplit(FormatFindRateCsv(*result), '\n', absl::SkipEmpty());
  ASSERT_EQ(csv.size(), 1u + 3u);
  EXPECT_TRUE(absl::StartsWith(csv[0], "p99_bound_us,found,rate,step,verdict,rate_asked,"));
  EXPECT_TRUE(absl::StartsWith(csv[2], "1000.0,true,5000.0,1,within,5000.0,5000.0,")) << csv[2];
  const std::string text = FormatFindRateText(*result, options);
  EXPECT_TRUE(absl::StrContains(text, "find-rate     5000.0 msg/s")) << text;
  EXPECT_TRUE(absl::StrContains(text, "\nprobe       closed")) << text;
  EXPECT_EQ(FormatFindRateStep(result->steps[2], 2, 2),
            "step 2/2: 7500.0 msg/s asked, 7500.0 achieved, p99 10000.0us: over");
}

TEST(FindRateTest, UsageErrors) {
  ModelServer server;
  const auto check = [&](FindRateOptions options, const std::string& says) {
    const absl::Status s = ValidateFindRateOptions(options);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << says;
    EXPECT_TRUE(absl::StrContains(s.message(), says)) << s;
    EXPECT_EQ(FindRate(options).status().code(), absl::StatusCode::kInvalidArgument);
  };
  const FindRateOptions good = ModelOptions(server, absl::Milliseconds(2));
  EXPECT_TRUE(ValidateFindRateOptions(good).ok());
  FindRateOptions o = good;
  o.p99_bound = absl::ZeroDuration();
  check(o, "needs a positive --p99 bound");
  o = good;
  o.p99_bound = absl::Microseconds(-500);
  check(o, "needs a positive --p99 bound");
  o = good;
  o.load.rate = 1000;
  check(o, "does not take --rate");
  o = good;
  o.load.messages = {"hello"};
  check(o, "does not apply to --messages");
  o = good;
  o.max_steps = 0;
  check(o, "--max-steps must be at least 1");
  o = good;
  o.step_duration = absl::ZeroDuration();
  check(o, "--step-duration must be positive");
  o = good;
  o.load.connections = 0;
  check(o, "connections must be at least 1");
  EXPECT_TRUE(server.asked.empty());  // Nothing ran.
}

// A server whose every echo takes 5 ms: no step can keep p99 under 1 ms,
// and at rates its two connections carry, every step keeps it under 200 ms.
constexpr absl::Duration kServerDelay = absl::Milliseconds(5);

FindRateOptions DelayedOptions(const DelayEchoServer& server, absl::Duration bound) {
  FindRateOptions options;
  options.load.target = server.address();
  options.load.connections = 2;
  options.load.threads = 1;
  options.load.warmup = absl::ZeroDuration();
  options.p99_bound = bound;
  options.step_duration = absl::Milliseconds(300);
  options.max_steps = 3;
  return options;
}

TEST(FindRateTest, ABoundBelowTheServersDelayFindsNoRate) {
  DelayEchoServer server(kServerDelay);
  const FindRateOptions options = DelayedOptions(server, absl::Milliseconds(1));
  const absl::StatusOr<FindRateResult> result = FindRate(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->probe_failed) << FormatFindRateText(*result, options);
  EXPECT_FALSE(result->found) << FormatFindRateText(*result, options);
  ASSERT_EQ(result->steps.size(), 4u);
  // The probe: two connections, one message each in flight, 5 ms a trip.
  EXPECT_LT(result->steps[0].rate_achieved, 2 * 1000.0 / 5) << FormatFindRateText(*result, options);
  EXPECT_GE(result->steps[0].p50_ns, 5'000'000u);
}

TEST(FindRateTest, ABoundAboveTheServersDelayFindsARate) {
  DelayEchoServer server(kServerDelay);
  FindRateOptions options = DelayedOptions(server, absl::Milliseconds(200));
  // More steps than the other test: one step in a few may find the client
  // preempted on a busy machine (saturated, so not passed).
  options.max_steps = 4;
  const absl::StatusOr<FindRateResult> result = FindRate(options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE(result->found) << FormatFindRateText(*result, options);
  EXPECT_GT(result->rate, 0);
  EXPECT_LE(result->rate, result->steps[0].rate_achieved);
  for (const FindRateStep& step : result->steps) {
    if (step.passed()) {
      EXPECT_LE(step.p99_ns, 200'000'000u);
      EXPECT_GE(step.p50_ns, 5'000'000u);
      EXPECT_EQ(step.errors, 0u);
    }
  }
}

}  // namespace
}  // namespace troupe
