#include "load/schedule.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>

namespace troupe::load {

int64_t MonotonicNanos() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

int WaitForEvents(int epoll_fd, epoll_event* events, int max_events, int64_t deadline_ns) {
  static std::atomic<bool> no_pwait2{false};
  const int64_t wait_ns = std::max<int64_t>(deadline_ns - MonotonicNanos(), 0);
  int n = -1;
  if (!no_pwait2.load(std::memory_order_relaxed)) {
    const timespec timeout{static_cast<time_t>(wait_ns / 1'000'000'000),
                           static_cast<long>(wait_ns % 1'000'000'000)};
    n = ::epoll_pwait2(epoll_fd, events, max_events, &timeout, nullptr);
    if (n >= 0 || errno != ENOSYS) return n;
    no_pwait2.store(true, std::memory_order_relaxed);
  }
  const int64_t ms = std::min<int64_t>((wait_ns + 999'999) / 1'000'000, 24 * 3600 * 1000);
  return ::epoll_wait(epoll_fd, events, max_events, static_cast<int>(ms));
}

int64_t OpenLoopSchedule::DueTime(size_t connection, uint64_t k) const {
  const double seq =
      static_cast<double>(connection) + static_cast<double>(k) * static_cast<double>(connections_);
  return start_ns_ + static_cast<int64_t>(seq * period_ns_);
}

uint64_t OpenLoopSchedule::DueCount(size_t connection, int64_t now) const {
  const double seqs = std::floor(static_cast<double>(now - start_ns_) / period_ns_) -
                      static_cast<double>(connection);
  if (seqs < 0) return 0;
  return static_cast<uint64_t>(seqs) / connections_ + 1;
}

uint64_t OpenLoopSchedule::SeqsDueBy(int64_t now) const {
  const double due = std::floor(static_cast<double>(now - start_ns_) / period_ns_) + 1;
  // Before the start nothing is due (and a negative double has no uint64).
  return due <= 0 ? 0 : static_cast<uint64_t>(due);
}

int64_t OpenLoopSchedule::SeqTime(uint64_t seq) const {
  return start_ns_ + static_cast<int64_t>(static_cast<double>(seq) * period_ns_);
}

}  // namespace troupe::load
