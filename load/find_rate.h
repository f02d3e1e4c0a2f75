// The knee search behind `echo-load --find-rate --p99 2ms`: the highest
// open-loop rate whose p99 latency (from the intended send time, so without
// coordinated omission) stays within a bound, with no errors and a client
// that kept up.
//
//   FindRateOptions options;
//   options.load.target = *Address::Parse("127.0.0.1:7007");
//   options.load.connections = 100;
//   options.p99_bound = absl::Milliseconds(2);
//   absl::StatusOr<FindRateResult> result = FindRate(options);
//   std::cout << FormatFindRateText(*result, options);
//   return result->found ? 0 : 1;
//
// How it searches:
//   1. probe: a closed-loop run of `step_duration` (after `load.warmup`)
//      with the given connections and pipeline: the most the server (and
//      the client) sustain that way. A probe with errors ends the search.
//   2. bisection between 0 and the probe's rate: each step is an open-loop
//      run at the middle of the bracket, on fresh connections (a RunLoad of
//      its own: an overloaded step's backlog cannot leak into the next), of
//      `step_duration` after `load.warmup`. A step passes when its p99 is
//      within the bound, it has no errors, and the client was not saturated
//      (load/client_cpu.h: a saturated client's figures are its own, so the
//      rate is not vouched for); it raises the bracket's floor, else lowers
//      its ceiling.
//   3. it stops once the bracket is within kFindRateBracket (5%) of its
//      ceiling, or after `max_steps` steps. The answer is the floor: the
//      highest rate that passed. None passed: not found.
//
// Thread safety: FindRate is thread-safe as RunLoad is; the structs are plain
// values; `on_step` runs on the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "load/load_client.h"

namespace troupe {

// The bisection stops once (ceiling - floor) <= this share of the ceiling.
inline constexpr double kFindRateBracket = 0.05;

// What one run of the search measured.
struct FindRateStep {
  // kProbe: the closed-loop probe; the others say how an open-loop step
  // fared, the first that applies: errors, a saturated client, a p99 over
  // the bound, or within it.
  enum class Verdict : uint8_t { kProbe, kErrors, kSaturated, kOverBound, kWithin };
  Verdict verdict = Verdict::kProbe;
  double rate_asked = 0;  // 0: the probe (closed loop).
  double rate_achieved = 0;
  uint64_t p50_ns = 0;
  uint64_t p99_ns = 0;
  uint64_t p999_ns = 0;
  // The same p99 from each message's actual send (LoadReport::actual_latency).
  uint64_t p99_actual_ns = 0;
  uint64_t errors = 0;
  std::string first_error;  // Empty when none.
  bool client_saturated = false;
  double busiest_thread_cpu = 0;

  bool passed() const { return verdict == Verdict::kWithin; }
};

struct FindRateOptions {
  // The runs' setup: target, connections, pipeline, size, threads, warmup
  // (before each step), timeouts, TLS... `rate` must be 0 and `messages`
  // empty: the search picks the rates; `duration` is unused.
  LoadOptions load;
  // The bound on each step's p99 (latency from the intended send time).
  absl::Duration p99_bound;
  // Each step's measured time, the probe's included.
  absl::Duration step_duration = absl::Seconds(3);
  // Open-loop steps at most, after the probe.
  int max_steps = 8;
  // Called after each run, the probe first.
  std::function<void(const FindRateStep&)> on_step;
  // Runs one step; RunLoad when empty. A seam for tests, which can stand in
  // a server model for the network.
  std::function<absl::StatusOr<LoadReport>(const LoadOptions&)> run_load;
};

struct FindRateResult {
  uint64_t p99_bound_ns = 0;
  // The highest rate that passed; 0 when none did (then `found` is false).
  bool found = false;
  double rate = 0;
  // The probe, then each open-loop step in order.
  std::vector<FindRateStep> steps;
  // The probe had errors: no step was run.
  bool probe_failed = false;
};

// Checks `options` without touching the network; the errors name the
// echo-load flags (--find-rate, --p99, ...), since they are its usage.
absl::Status ValidateFindRateOptions(const FindRateOptions& options);

// Runs the probe and the bisection; blocks for about (max_steps + 1) x
// (warmup + step_duration). Returns an error when the options are invalid or
// a run fails outright (nothing could connect); every other outcome is in
// the result.
absl::StatusOr<FindRateResult> FindRate(const FindRateOptions& options);

// The verdict as the reports name it: "probe", "errors", "saturated",
// "over", "within".
const char* FindRateVerdictName(FindRateStep::Verdict verdict);

// One line per step as it completes, for stderr, without a newline, e.g.
//   "step 3/8: 11250.0 msg/s asked, 11249.8 achieved, p99 912.0us: within"
std::string FormatFindRateStep(const FindRateStep& step, int index, int max_steps);

// The text report: the answer, then a table of the steps; ends in a newline.
std::string FormatFindRateText(const FindRateResult& result, const FindRateOptions& options);
// One JSON object on one line, ending in a newline: the setup and
// "find_rate": {"p99_bound_us", "found", "rate", ..., "steps": [...]}.
std::string FormatFindRateJson(const FindRateResult& result, const FindRateOptions& options);
// A header line and one line per step; the bound and the answer repeat on
// every line.
std::string FormatFindRateCsv(const FindRateResult& result);

}  // namespace troupe
