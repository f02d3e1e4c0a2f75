#include "core/loop/timers.h"

#include <algorithm>
#include <utility>

#include "core/base/deadline.h"

namespace troupe {

TimerWheel::Geometry Timers::GeometryFor(std::initializer_list<absl::Duration> timeouts) {
  Clock::duration shortest = std::chrono::seconds(8);
  Clock::duration longest = std::chrono::seconds(8);
  bool any = false;
  for (absl::Duration d : timeouts) {
    if (!IsFiniteTimeout(d) || d > absl::Hours(24 * 365)) continue;
    const auto ns = std::chrono::duration_cast<Clock::duration>(absl::ToChronoNanoseconds(d));
    shortest = any ? std::min(shortest, ns) : ns;
    longest = any ? std::max(longest, ns) : ns;
    any = true;
  }
  const auto tick = std::clamp<Clock::duration>(shortest / 8, std::chrono::milliseconds(1),
                                                std::chrono::seconds(1));
  return {tick, std::min<size_t>(static_cast<size_t>(longest / tick) + 2, 4096)};
}

Timers::Timers(TimerWheel::Geometry geometry, Clock::time_point start) : wheel_(geometry, start) {}

void Timers::RunAfter(Clock::time_point now, absl::Duration delay, Task task) {
  // An infinite delay saturates to time_point::max() (core/base/deadline.h):
  // the task is held, never run, and destroyed with the reactor.
  tasks_.push(Entry{DeadlineAfter(now, delay), sequence_++, std::move(task)});
}

void Timers::SetDeadline(ConnectionId id, Clock::time_point when) {
  if (when == Clock::time_point::max()) {
    wheel_.Cancel(id);
  } else {
    wheel_.Schedule(id, when);
  }
}

void Timers::ClearDeadline(ConnectionId id) { wheel_.Cancel(id); }

Timers::Clock::time_point Timers::NextDue() const {
  const Clock::time_point task = tasks_.empty() ? Clock::time_point::max() : tasks_.top().when;
  return std::min(task, wheel_.NextDue());
}

void Timers::RunDueTasks(Clock::time_point now) {
  while (!tasks_.empty() && tasks_.top().when <= now) {
    Task task = std::move(tasks_.top().task);
    tasks_.pop();
    std::move(task)();
  }
}

void Timers::ExpireDeadlines(Clock::time_point now, absl::FunctionRef<void(ConnectionId)> expired) {
  // Even when empty: Advance keeps the cursor at now in O(1), so a deadline
  // set after a long quiet spell is placed from the present.
  wheel_.Advance(now, expired);
}

}  // namespace troupe
