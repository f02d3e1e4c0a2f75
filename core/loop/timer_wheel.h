// TimerWheel: coarse per-connection deadlines (idle, flush and linger
// timeouts) for one reactor, with O(1) scheduling and cancelling and no
// per-connection kernel timer.
//
//   slots:  [0] [1] [2] ... [N-1]      each slot = one `tick` of time
//            ▲
//            cursor: the slot for "now"; Advance() walks it forward,
//            handing every entry of each passed slot to the caller
//
// An entry lives in the slot of its deadline (rounded up to a tick;
// deadlines beyond the wheel's span wrap into the last reachable slot).
// Activity never touches the wheel: the owner keeps a last-active time and,
// when an entry expires, either closes the connection or schedules it again
// at its next deadline ("lazy rescheduling", as in Linux's and Kafka's
// timing wheels), so a busy connection costs one wheel operation per
// timeout period rather than one per message.
//
// Each connection has at most one entry (Schedule replaces it) and Cancel
// removes it at once, so the wheel holds one entry per live connection with
// a deadline, whatever the churn: a closed connection leaves nothing behind.
// Entries are found by the connection's slot in the reactor's table.
//
// Thread safety: loop-affine (owning reactor).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "core/loop/connection_id.h"

namespace troupe {

class TimerWheel {
 public:
  using Clock = std::chrono::steady_clock;

  // `tick`: the resolution; `slots`: how many ticks the wheel spans.
  TimerWheel(Clock::duration tick, size_t slots, Clock::time_point start);
  struct Geometry {
    Clock::duration tick;
    size_t slots;
  };
  TimerWheel(Geometry geometry, Clock::time_point start)
      : TimerWheel(geometry.tick, geometry.slots, start) {}

  // Makes `id`'s one entry fire at (or up to one tick after) `deadline`,
  // replacing any entry it had.
  void Schedule(ConnectionId id, Clock::time_point deadline);
  // Removes `id`'s entry, if it has one. O(1).
  void Cancel(ConnectionId id);
  // Hands every entry whose slot has passed by `now` to `expired`.
  void Advance(Clock::time_point now, absl::FunctionRef<void(ConnectionId)> expired);

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // When Advance() next has work to look at: the end of the current tick
  // while anything is scheduled (a reactor with waiting deadlines wakes once
  // per tick), else Clock::time_point::max(). O(1).
  Clock::time_point NextDue() const {
    return size_ == 0 ? Clock::time_point::max() : cursor_time_ + tick_;
  }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Where {  // an entry's place: slots_[wheel_slot][index]
    uint32_t wheel_slot = kNone;
    uint32_t index = 0;
  };
  Where& WhereOf(uint32_t table_slot);

  Clock::duration tick_;
  std::vector<std::vector<ConnectionId>> slots_;
  std::vector<Where> where_;          // by connection table slot
  std::vector<ConnectionId> firing_;  // reused while a slot is handed out
  size_t cursor_ = 0;                 // slot covering cursor_time_
  Clock::time_point cursor_time_;     // start of the cursor's tick
  size_t size_ = 0;
};

}  // namespace troupe
