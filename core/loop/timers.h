// Timers: every timer of one reactor behind one API. Two kinds, because two
// costs matter:
//
//   RunAfter(delay, task)         one-shot tasks (actor timers, pauses): a
//                                 binary heap, O(log n), FIFO among equal
//                                 deadlines
//   SetDeadline(id, when)         one coarse deadline per table entry (idle,
//                                 flush, linger): the TimerWheel
//                                 (core/loop/timer_wheel.h), O(1) to set,
//                                 move or clear, however much churn
//
//   Timers timers(Timers::GeometryFor({idle, flush, linger}), now);
//   timers.RunAfter(now, absl::Milliseconds(5), [] { ... });
//   timers.SetDeadline(conn.id(), now + idle);
//   loop: epoll_wait(..., timers.NextDue() - now) ...
//         timers.RunDueTasks(now); timers.ExpireDeadlines(now, on_deadline);
//
// Thread safety: loop-affine (owning reactor).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <queue>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/time/time.h"
#include "core/loop/connection_id.h"
#include "core/loop/timer_wheel.h"

namespace troupe {

class Timers {
 public:
  using Clock = std::chrono::steady_clock;
  using Task = absl::AnyInvocable<void() &&>;

  // The wheel's geometry for a set of timeouts: an eighth of the shortest
  // finite one per tick (1 ms..1 s), so deadlines fire at most ~12% late and
  // a loop with waiting deadlines wakes at most once per tick; the span
  // covers the longest (4,096 slots at most; later deadlines wrap and are
  // rescheduled when they come round).
  static TimerWheel::Geometry GeometryFor(std::initializer_list<absl::Duration> timeouts);

  Timers(TimerWheel::Geometry geometry, Clock::time_point start);

  // Runs `task` once, `delay` after `now` (an infinite delay never fires).
  void RunAfter(Clock::time_point now, absl::Duration delay, Task task);
  // Makes `id`'s one deadline `when`, replacing any it had; time_point::max()
  // clears it.
  void SetDeadline(ConnectionId id, Clock::time_point when);
  void ClearDeadline(ConnectionId id);

  // When RunDueTasks or ExpireDeadlines next has work: the earliest task,
  // or the wheel's next tick while it holds deadlines; time_point::max()
  // when idle. O(1).
  Clock::time_point NextDue() const;
  // Runs the tasks due by `now`, in deadline order.
  void RunDueTasks(Clock::time_point now);
  // Hands each entry whose deadline may have passed by `now` to `expired`,
  // which checks it against the same `now` and either acts or sets the next
  // deadline (deadlines are lazily rescheduled).
  void ExpireDeadlines(Clock::time_point now, absl::FunctionRef<void(ConnectionId)> expired);

  size_t tasks() const { return tasks_.size(); }
  size_t deadlines() const { return wheel_.size(); }

 private:
  struct Entry {
    Clock::time_point when;
    uint64_t sequence;  // FIFO among equal deadlines
    mutable Task task;  // mutable: std::priority_queue::top() is const
    bool operator>(const Entry& other) const {
      return when != other.when ? when > other.when : sequence > other.sequence;
    }
  };

  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> tasks_;
  uint64_t sequence_ = 0;
  TimerWheel wheel_;
};

}  // namespace troupe
