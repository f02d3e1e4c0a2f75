#include "load/find_rate.h"

#include <cstddef>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "load/report_fields.h"

namespace troupe {
namespace {

double Micros(uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

// What one run measured, and how it fared against the bound. The probe's
// verdict stays kProbe: it sets the bracket, it does not pass or fail.
FindRateStep Summarize(const LoadReport& report, double rate_asked, uint64_t bound_ns) {
  FindRateStep step;
  step.rate_asked = rate_asked;
  step.rate_achieved = report.MessagesPerSecond();
  step.p50_ns = report.latency_ns.ValueAtPercentile(50);
  step.p99_ns = report.latency_ns.ValueAtPercentile(99);
  step.p999_ns = report.latency_ns.ValueAtPercentile(99.9);
  step.p99_actual_ns = report.actual_latency().ValueAtPercentile(99);
  step.errors = report.error_count();
  if (!report.first_errors.empty()) step.first_error = report.first_errors.front();
  step.client_saturated = report.client.saturated;
  step.busiest_thread_cpu = report.client.busiest_busy;
  if (rate_asked == 0) {
    step.verdict = FindRateStep::Verdict::kProbe;
  } else if (step.errors > 0) {
    step.verdict = FindRateStep::Verdict::kErrors;
  } else if (step.client_saturated) {
    step.verdict = FindRateStep::Verdict::kSaturated;
  } else if (step.p99_ns > bound_ns) {
    step.verdict = FindRateStep::Verdict::kOverBound;
  } else {
    step.verdict = FindRateStep::Verdict::kWithin;
  }
  return step;
}

std::string StepName(int index) {
  return index == 0 ? std::string("probe") : absl::StrCat("step ", index);
}

}  // namespace

absl::Status ValidateFindRateOptions(const FindRateOptions& options) {
  if (options.p99_bound <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--find-rate needs a positive --p99 bound (e.g. --p99 2ms or --p99=500us), got ",
        absl::FormatDuration(options.p99_bound)));
  }
  if (options.load.rate != 0) {
    return absl::InvalidArgumentError(
        "--find-rate picks the rates itself: it does not take --rate");
  }
  if (!options.load.messages.empty()) {
    return absl::InvalidArgumentError(
        "--find-rate does not apply to --messages: a script is sent once, at no rate");
  }
  if (options.step_duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--step-duration must be positive, got ",
                                                   absl::FormatDuration(options.step_duration)));
  }
  if (options.max_steps < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-steps must be at least 1, got ", options.max_steps));
  }
  // Every step is an open-loop run of step_duration: whatever excludes that
  // (--churn, say) excludes the search.
  LoadOptions step = options.load;
  step.rate = 1;
  step.duration = options.step_duration;
  if (absl::Status s = ValidateLoadOptions(step); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--find-rate: ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<FindRateResult> FindRate(const FindRateOptions& options) {
  if (absl::Status s = ValidateFindRateOptions(options); !s.ok()) return s;
  const auto run = [&](double rate) -> absl::StatusOr<LoadReport> {
    LoadOptions load = options.load;
    load.rate = rate;
    load.duration = options.step_duration;
    return options.run_load ? options.run_load(load) : RunLoad(load);
  };
  FindRateResult result;
  result.p99_bound_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(options.p99_bound));
  const auto record = [&](FindRateStep step) {
    result.steps.push_back(std::move(step));
    if (options.on_step) options.on_step(result.steps.back());
  };

  absl::StatusOr<LoadReport> probe = run(0);
  if (!probe.ok()) return probe.status();
  record(Summarize(*probe, 0, result.p99_bound_ns));
  if (!probe->ok()) {
    result.probe_failed = true;
    return result;
  }
  // Invariant: `floor` passed (or is 0, untried) and `ceiling` did not (or
  // is the probe's rate, which an open loop with the same window cannot
  // beat by much).
  double floor = 0;
  double ceiling = probe->MessagesPerSecond();
  for (int i = 0; i < options.max_steps; ++i) {
    if (floor > 0 && ceiling - floor <= kFindRateBracket * ceiling) break;
    const double rate = (floor + ceiling) / 2;
    absl::StatusOr<LoadReport> report = run(rate);
    if (!report.ok()) return report.status();
    FindRateStep step = Summarize(*report, rate, result.p99_bound_ns);
    if (step.passed()) {
      floor = rate;
    } else {
      ceiling = rate;
    }
    record(std::move(step));
  }
  result.found = floor > 0;
  result.rate = floor;
  return result;
}

const char* FindRateVerdictName(FindRateStep::Verdict verdict) {
  switch (verdict) {
    case FindRateStep::Verdict::kProbe:
      return "probe";
    case FindRateStep::Verdict::kErrors:
      return "errors";
    case FindRateStep::Verdict::kSaturated:
      return "saturated";
    case FindRateStep::Verdict::kOverBound:
      return "over";
    case FindRateStep::Verdict::kWithin:
      return "within";
  }
  return "?";
}

std::string FormatFindRateStep(const FindRateStep& step, int index, int max_steps) {
  std::string out;
  if (index == 0) {
    absl::StrAppendFormat(&out, "probe (closed loop): %.1f msg/s, p99 %.1fus", step.rate_achieved,
                          Micros(step.p99_ns));
  } else {
    absl::StrAppendFormat(&out, "step %d/%d: %.1f msg/s asked, %.1f achieved, p99 %.1fus: %s",
                          index, max_steps, step.rate_asked, step.rate_achieved,
                          Micros(step.p99_ns), FindRateVerdictName(step.verdict));
  }
  if (step.client_saturated) {
    absl::StrAppendFormat(&out, " (client saturated, busiest thread %.0f%% CPU)",
                          step.busiest_thread_cpu * 100);
  }
  if (step.errors > 0) {
    absl::StrAppendFormat(&out, " (%d errors; first: %s)", step.errors, step.first_error);
  }
  return out;
}

std::string FormatFindRateText(const FindRateResult& result, const FindRateOptions& options) {
  const LoadOptions& load = options.load;
  std::string out;
  absl::StrAppendFormat(&out, "%-14s%s (%d connections, %d-byte messages, pipeline %d)\n", "target",
                        load.target.ToString(), load.connections, load.message_size, load.pipeline);
  const double bound_us = Micros(result.p99_bound_ns);
  if (result.probe_failed) {
    absl::StrAppendFormat(&out, "%-14sno rate searched: the closed-loop probe had errors\n",
                          "find-rate");
  } else if (result.found) {
    absl::StrAppendFormat(&out,
                          "%-14s%.1f msg/s: the highest rate tried with p99 <= %.1fus, no errors "
                          "and a client that kept up\n",
                          "find-rate", result.rate, bound_us);
  } else {
    // Bisection from 0 halves the rate every step that misses: the last
    // step is the lowest tried.
    const double lowest = result.steps.empty() ? 0 : result.steps.back().rate_asked;
    absl::StrAppendFormat(&out,
                          "%-14snone: no rate tried kept p99 <= %.1fus with no errors; even "
                          "%.1f msg/s, the lowest, missed\n",
                          "find-rate", bound_us, lowest);
  }
  absl::StrAppendFormat(&out, "%-6s%12s%15s%11s%11s%11s%8s%9s  %s\n", "step", "asked msg/s",
                        "achieved msg/s", "p50 us", "p99 us", "p99.9 us", "errors", "client",
                        "verdict");
  for (size_t i = 0; i < result.steps.size(); ++i) {
    const FindRateStep& s = result.steps[i];
    const std::string asked =
        i == 0 ? std::string("closed") : absl::StrFormat("%.1f", s.rate_asked);
    const std::string client =
        absl::StrFormat("%.0f%%%s", s.busiest_thread_cpu * 100, s.client_saturated ? " sat" : "");
    absl::StrAppendFormat(&out, "%-6s%12s%15.1f%11.1f%11.1f%11.1f%8d%9s  %s\n",
                          i == 0 ? std::string("probe") : absl::StrCat(i), asked, s.rate_achieved,
                          Micros(s.p50_ns), Micros(s.p99_ns), Micros(s.p999_ns), s.errors, client,
                          FindRateVerdictName(s.verdict));
  }
  for (size_t i = 0; i < result.steps.size(); ++i) {
    const FindRateStep& s = result.steps[i];
    if (!s.first_error.empty()) {
      absl::StrAppend(&out, "  ", StepName(static_cast<int>(i)), ": ", s.first_error, "\n");
    }
  }
  return out;
}

std::string FormatFindRateJson(const FindRateResult& result, const FindRateOptions& options) {
  const LoadOptions& load = options.load;
  std::string out = "{\"target\":";
  AppendJsonString(out, load.target.ToString());
  absl::StrAppendFormat(&out, ",\"connections\":%d,\"message_size\":%d,\"pipeline\":%d",
                        load.connections, load.message_size, load.pipeline);
  absl::StrAppendFormat(&out,
                        ",\"find_rate\":{\"p99_bound_us\":%.1f,\"found\":%s,\"rate\":%.1f,"
                        "\"probe_failed\":%s,\"warmup_s\":%.3f,\"step_duration_s\":%.3f,"
                        "\"max_steps\":%d,\"steps\":[",
                        Micros(result.p99_bound_ns), result.found ? "true" : "false", result.rate,
                        result.probe_failed ? "true" : "false", absl::ToDoubleSeconds(load.warmup),
                        absl::ToDoubleSeconds(options.step_duration), options.max_steps);
  for (size_t i = 0; i < result.steps.size(); ++i) {
    const FindRateStep& s = result.steps[i];
    if (i > 0) out.push_back(',');
    absl::StrAppendFormat(
        &out,
        "{\"step\":%d,\"verdict\":\"%s\",\"rate_asked\":%.1f,\"rate_achieved\":%.1f,"
        "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p99_9_us\":%.1f,\"p99_actual_us\":%.1f,"
        "\"errors\":%d,\"client_saturated\":%s,\"busiest_thread_cpu\":%.3f,"
        "\"first_error\":",
        i, FindRateVerdictName(s.verdict), s.rate_asked, s.rate_achieved, Micros(s.p50_ns),
        Micros(s.p99_ns), Micros(s.p999_ns), Micros(s.p99_actual_ns), s.errors,
        s.client_saturated ? "true" : "false", s.busiest_thread_cpu);
    AppendJsonString(out, s.first_error);
    out.push_back('}');
  }
  out += "]}}\n";
  return out;
}

std::string FormatFindRateCsv(const FindRateResult& result) {
  std::string out =
      "p99_bound_us,found,rate,step,verdict,rate_asked,rate_achieved,p50_us,p99_us,p99_9_us,"
      "p99_actual_us,errors,client_saturated,busiest_thread_cpu,first_error\n";
  for (size_t i = 0; i < result.steps.size(); ++i) {
    const FindRateStep& s = result.steps[i];
    absl::StrAppendFormat(&out, "%.1f,%s,%.1f,%d,%s,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%d,%s,%.3f,",
                          Micros(result.p99_bound_ns), result.found ? "true" : "false", result.rate,
                          i, FindRateVerdictName(s.verdict), s.rate_asked, s.rate_achieved,
                          Micros(s.p50_ns), Micros(s.p99_ns), Micros(s.p999_ns),
                          Micros(s.p99_actual_ns), s.errors, s.client_saturated ? "true" : "false",
                          s.busiest_thread_cpu);
    AppendCsvField(out, s.first_error);
    out.push_back('\n');
  }
  return out;
}

}  // namespace troupe
