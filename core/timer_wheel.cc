#include "core/timer_wheel.h"

#include "core/check.h"

namespace troupe {

TimerWheel::TimerWheel(Clock::duration tick, size_t slots, Clock::time_point start)
    : tick_(tick), slots_(slots), cursor_time_(start) {
  TROUPE_CHECK(tick > Clock::duration::zero() && slots >= 2, "bad TimerWheel geometry");
}

void TimerWheel::Schedule(ConnectionId id, Clock::time_point deadline) {
  // Ticks ahead of the cursor, rounded up so nothing fires early; at least
  // one (the cursor's slot is being handed out or already was); at most the
  // span, beyond which the entry fires early and is simply rescheduled.
  int64_t ahead = 1;
  if (deadline > cursor_time_) {
    ahead = (deadline - cursor_time_ + tick_ - Clock::duration(1)) / tick_;
    if (ahead < 1) ahead = 1;
  }
  if (ahead >= static_cast<int64_t>(slots_.size())) ahead = slots_.size() - 1;
  slots_[(cursor_ + static_cast<size_t>(ahead)) % slots_.size()].push_back(id);
  ++size_;
}

void TimerWheel::Advance(Clock::time_point now,
                         absl::FunctionRef<void(ConnectionId)> expired) {
  // Each passed tick hands out the slot that becomes current.
  while (cursor_time_ + tick_ <= now) {
    cursor_time_ += tick_;
    cursor_ = (cursor_ + 1) % slots_.size();
    if (slots_[cursor_].empty()) {
      if (size_ == 0) {
        // Nothing pending: jump straight to now instead of walking ticks.
        const int64_t skip = (now - cursor_time_) / tick_;
        cursor_time_ += skip * tick_;
        cursor_ = (cursor_ + static_cast<size_t>(skip)) % slots_.size();
      }
      continue;
    }
    firing_.clear();
    firing_.swap(slots_[cursor_]);
    size_ -= firing_.size();
    // `expired` may Schedule() again; it lands in a later slot, never here.
    for (const ConnectionId& id : firing_) expired(id);
  }
}

}  // namespace troupe
