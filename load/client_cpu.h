// The client's own load: how busy each worker thread was over the measured
// window, how late the open loop's schedule was kept, and from both whether
// the figures may be the client's limit rather than the server's.
//
//   ThreadCpuWindow cpu;
//   cpu.Start(MonotonicNanos());     // On the worker thread, as the
//   ...                              // measured window opens,
//   cpu.Stop(MonotonicNanos());      // and on the same thread as it ends.
//   double busy = cpu.busy();        // 0.97: on a CPU 97% of the window
//
//   ClientLoad load = AssessClientLoad({0.12, 0.97}, send_lag_ns, /*open_loop=*/true);
//   if (load.saturated) std::cerr << FormatClientWarning(load) << "\n";
//
// A thread's busy fraction is its CPU time (user and system, from
// getrusage(RUSAGE_THREAD)) over the window's wall time: 1.0 is a thread
// that never waited in epoll. A thread at 90% or more spent the window
// working, so the server may have been waiting on the client.
//
// Send lag (open loop only) is how late the worker's loop got to each
// message the schedule had due in the measured window: the time it issued
// the message (or found its connection's window full) minus its intended
// send time. It is the client's own lateness; a message held back by a full
// pipeline window is the server's, and is not in it. When more than one
// message in ten went out over 1 ms late, the schedule fell behind: the
// client could not issue the rate asked.
//
// Thread safety: ThreadCpuNanos and a ThreadCpuWindow's Start and Stop read
// the calling thread's clock, so they must run on the thread measured; a
// ThreadCpuWindow is thread-compatible. The free functions are pure.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "load/histogram.h"

namespace troupe {

// A worker thread at or above this busy fraction is saturated: below it the
// thread still slept a tenth of the window, so it had time to spare.
inline constexpr double kSaturatedBusy = 0.90;
// The open loop fell behind when more than kSaturatedLagShare of the
// measured messages were issued over kSaturatedLagNs late: a share that
// scheduling noise (a preempted thread now and then) does not reach, and a
// lateness ten loopback round trips long.
inline constexpr uint64_t kSaturatedLagNs = 1'000'000;
inline constexpr double kSaturatedLagShare = 0.10;

// What RunLoad reports of the client itself (LoadReport::client).
struct ClientLoad {
  // Each worker thread's busy fraction over the measured window, by thread
  // number (0 .. threads - 1); -1 for a thread not measured (its loop ended
  // before the window opened). Empty in a hand-made report.
  std::vector<double> thread_busy;
  int busiest_thread = -1;  // -1: no thread measured.
  double busiest_busy = 0;
  // Open loop: how late each measured message was issued (see above), in
  // nanoseconds; empty in the closed loop, which has no schedule.
  LatencyHistogram send_lag_ns;
  // Why the figures may be the client's limit: a thread at kSaturatedBusy
  // or more, and/or the schedule behind by kSaturatedLagNs on more than
  // kSaturatedLagShare of the messages.
  bool cpu_saturated = false;
  bool lag_saturated = false;
  bool saturated = false;
};

// The calling thread's CPU time so far, user and system, in nanoseconds.
int64_t ThreadCpuNanos();

// One thread's busy fraction over a window of wall time.
class ThreadCpuWindow {
 public:
  bool started() const { return start_wall_ns_ >= 0; }
  // Opens the window at `now_ns` (MonotonicNanos); a second call is ignored.
  void Start(int64_t now_ns);
  // Closes it at `now_ns`; nothing when it never opened.
  void Stop(int64_t now_ns);
  // CPU time / wall time of the closed window, in [0, 1]; 0 when it never
  // opened or lasted no time.
  double busy() const { return busy_; }

 private:
  int64_t start_wall_ns_ = -1;
  int64_t start_cpu_ns_ = 0;
  double busy_ = 0;
};

// Decides ClientLoad from each thread's busy fraction and the threads'
// merged send lag (ignored unless `open_loop`). The seam the tests feed
// made-up measurements through.
ClientLoad AssessClientLoad(std::vector<double> thread_busy, const LatencyHistogram& send_lag_ns,
                            bool open_loop);

// The warning echo-load prints on stderr for a saturated client, one line
// per reason, each starting "echo-load: warning: " and ending in a newline;
// empty when not saturated.
std::string FormatClientWarning(const ClientLoad& load);

// The share of `send_lag_ns` above `bound_ns`, in [0, 1] (0 when empty).
double ShareAbove(const LatencyHistogram& send_lag_ns, uint64_t bound_ns);

}  // namespace troupe
