#include "load/client_cpu.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstddef>
#include <utility>

#include "absl/strings/str_format.h"

namespace troupe {

int64_t ThreadCpuNanos() {
  rusage usage{};
  // RUSAGE_THREAD (Linux 2.6.26) cannot fail for the calling thread; a
  // zero on failure would only read as an idle thread.
  if (::getrusage(RUSAGE_THREAD, &usage) != 0) return 0;
  const auto nanos = [](const timeval& tv) {
    return int64_t{tv.tv_sec} * 1'000'000'000 + int64_t{tv.tv_usec} * 1'000;
  };
  return nanos(usage.ru_utime) + nanos(usage.ru_stime);
}

void ThreadCpuWindow::Start(int64_t now_ns) {
  if (started()) return;
  start_wall_ns_ = now_ns;
  start_cpu_ns_ = ThreadCpuNanos();
}

void ThreadCpuWindow::Stop(int64_t now_ns) {
  if (!started()) return;
  const int64_t wall = now_ns - start_wall_ns_;
  const int64_t cpu = ThreadCpuNanos() - start_cpu_ns_;
  // getrusage counts in microseconds and the two clocks are read a moment
  // apart, so a thread that never slept can come out a hair above 1.
  busy_ =
      wall > 0 ? std::clamp(static_cast<double>(cpu) / static_cast<double>(wall), 0.0, 1.0) : 0.0;
}

double ShareAbove(const LatencyHistogram& send_lag_ns, uint64_t bound_ns) {
  if (send_lag_ns.count() == 0) return 0;
  return static_cast<double>(send_lag_ns.CountAbove(bound_ns)) /
         static_cast<double>(send_lag_ns.count());
}

ClientLoad AssessClientLoad(std::vector<double> thread_busy, const LatencyHistogram& send_lag_ns,
                            bool open_loop) {
  ClientLoad load;
  load.thread_busy = std::move(thread_busy);
  for (size_t i = 0; i < load.thread_busy.size(); ++i) {
    if (load.thread_busy[i] < 0) continue;  // Not measured.
    if (load.busiest_thread < 0 || load.thread_busy[i] > load.busiest_busy) {
      load.busiest_thread = static_cast<int>(i);
      load.busiest_busy = load.thread_busy[i];
    }
  }
  load.cpu_saturated = load.busiest_thread >= 0 && load.busiest_busy >= kSaturatedBusy;
  if (open_loop) {
    load.send_lag_ns.Merge(send_lag_ns);
    load.lag_saturated = ShareAbove(load.send_lag_ns, kSaturatedLagNs) > kSaturatedLagShare;
  }
  load.saturated = load.cpu_saturated || load.lag_saturated;
  return load;
}

std::string FormatClientWarning(const ClientLoad& load) {
  constexpr const char* kAdvice =
      "the figures may be the client's limit, not the server's; add --threads or move the "
      "client to more cores";
  std::string out;
  if (load.cpu_saturated) {
    absl::StrAppendFormat(&out, "echo-load: warning: client thread %d was %.0f%% busy: %s\n",
                          load.busiest_thread, load.busiest_busy * 100, kAdvice);
  }
  if (load.lag_saturated) {
    // A schedule that falls behind while no thread was busy: the threads
    // waited for a CPU the machine gave to something else.
    const std::string why =
        load.cpu_saturated
            ? std::string("it could not keep the rate's schedule")
            : absl::StrFormat(
                  "its threads were %.0f%% busy at most, so they waited for a CPU: the machine "
                  "is busy",
                  load.busiest_busy * 100);
    absl::StrAppendFormat(&out,
                          "echo-load: warning: the client issued %.0f%% of its messages over %.0f "
                          "ms late (send lag p50 %.1fus, p99 %.1fus): %s; %s\n",
                          ShareAbove(load.send_lag_ns, kSaturatedLagNs) * 100,
                          static_cast<double>(kSaturatedLagNs) / 1e6,
                          static_cast<double>(load.send_lag_ns.ValueAtPercentile(50)) / 1000.0,
                          static_cast<double>(load.send_lag_ns.ValueAtPercentile(99)) / 1000.0, why,
                          kAdvice);
  }
  return out;
}

}  // namespace troupe
