// When things happen in a run: the monotonic clock every deadline is read
// on, the phase times RunLoad fixes once every connection is up, and one
// worker thread's open-loop (--rate) send schedule.
//
//   OpenLoopSchedule open_loop(/*messages_per_s=*/500, /*connections=*/4);
//   open_loop.Start(times.start_ns);
//   uint64_t due = open_loop.DueCount(/*connection=*/2, MonotonicNanos());
//
// Open loop: a thread with n connections sends its messages 0, 1, 2, ... at
// start + seq * period, message seq on connection seq mod n; connection i's
// k-th message is the thread's message i + k * n. A message's latency counts
// from that due time, however late it actually goes out.
//
// Thread safety: MonotonicNanos is thread-safe. PhaseTimes is written by
// RunLoad before the workers start their traffic and only read after. An
// OpenLoopSchedule is thread-compatible: one per worker.
#pragma once

#include <sys/epoll.h>

#include <cstddef>
#include <cstdint>

namespace troupe::load {

// CLOCK_MONOTONIC, not absl::Now(): latencies and phase deadlines must not
// jump when the wall clock is stepped. One vDSO call, ~20 ns.
int64_t MonotonicNanos();

// epoll_wait on `epoll_fd` until `deadline_ns` (MonotonicNanos) at the
// latest: epoll_pwait2 (Linux 5.11) with its nanosecond timeout, which the
// open loop needs to send on time, else epoll_wait's milliseconds rounded up
// (so a loop never wakes just before its deadline and spins). Returns the
// number of events, or -1 with errno EINTR.
int WaitForEvents(int epoll_fd, epoll_event* events, int max_events, int64_t deadline_ns);

// Times of the run's phases, on the MonotonicNanos() clock.
struct PhaseTimes {
  bool abort = false;    // Nothing connected: close and stop.
  int64_t start_ns = 0;  // Traffic starts (warmup, or the script).
  int64_t measure_start_ns = 0;
  int64_t end_ns = 0;
};

class OpenLoopSchedule {
 public:
  // Closed loop: nothing is scheduled; active() is false.
  OpenLoopSchedule() = default;
  // `messages_per_s` in all, spread evenly over `connections` (> 0).
  OpenLoopSchedule(double messages_per_s, size_t connections)
      : period_ns_(1e9 / messages_per_s), connections_(connections) {}

  bool active() const { return period_ns_ > 0; }
  // The instant message 0 is due.
  void Start(int64_t start_ns) { start_ns_ = start_ns; }

  // When the k-th message of connection `connection` is due.
  int64_t DueTime(size_t connection, uint64_t k) const;
  // How many of connection `connection`'s messages are due by `now`.
  uint64_t DueCount(size_t connection, int64_t now) const;
  // How many of the thread's messages are due by `now`, all connections.
  uint64_t SeqsDueBy(int64_t now) const;
  // When the thread's message `seq` is due.
  int64_t SeqTime(uint64_t seq) const;

 private:
  double period_ns_ = 0;  // 0: closed loop.
  size_t connections_ = 0;
  int64_t start_ns_ = 0;
};

}  // namespace troupe::load
