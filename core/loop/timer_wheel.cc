#include "core/loop/timer_wheel.h"

#include "core/base/check.h"

namespace troupe {

TimerWheel::TimerWheel(Clock::duration tick, size_t slots, Clock::time_point start)
    : tick_(tick), slots_(slots), cursor_time_(start) {
  TROUPE_CHECK(tick > Clock::duration::zero() && slots >= 2, "bad TimerWheel geometry");
}

TimerWheel::Where& TimerWheel::WhereOf(uint32_t table_slot) {
  if (table_slot >= where_.size()) where_.resize(table_slot + 1);
  return where_[table_slot];
}

void TimerWheel::Schedule(ConnectionId id, Clock::time_point deadline) {
  Cancel(id);
  // Ticks ahead of the cursor, rounded up so nothing fires early; at least
  // one (the cursor's slot is being handed out or already was); at most the
  // span, beyond which the entry fires early and is simply rescheduled.
  int64_t ahead = 1;
  if (deadline > cursor_time_) {
    const auto until = deadline - cursor_time_;
    // Divide first: `until + tick_` could overflow for a far deadline.
    ahead = until / tick_ + (until % tick_ != Clock::duration::zero() ? 1 : 0);
    if (ahead < 1) ahead = 1;
  }
  if (ahead >= static_cast<int64_t>(slots_.size())) ahead = static_cast<int64_t>(slots_.size()) - 1;
  const size_t slot = (cursor_ + static_cast<size_t>(ahead)) % slots_.size();
  WhereOf(id.slot) = Where{static_cast<uint32_t>(slot), static_cast<uint32_t>(slots_[slot].size())};
  slots_[slot].push_back(id);
  ++size_;
}

void TimerWheel::Cancel(ConnectionId id) {
  if (id.slot >= where_.size()) return;
  Where& where = where_[id.slot];
  if (where.wheel_slot == kNone) return;
  std::vector<ConnectionId>& bucket = slots_[where.wheel_slot];
  if (!(bucket[where.index] == id)) return;  // a stale id: not its entry
  // Swap-remove: the last entry of the bucket takes this one's place.
  const ConnectionId moved = bucket.back();
  bucket[where.index] = moved;
  where_[moved.slot].index = where.index;
  bucket.pop_back();
  where.wheel_slot = kNone;
  --size_;
}

void TimerWheel::Advance(Clock::time_point now, absl::FunctionRef<void(ConnectionId)> expired) {
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
    for (const ConnectionId& id : firing_) where_[id.slot].wheel_slot = kNone;
    // `expired` may Schedule() again; it lands in a later slot, never here.
    for (const ConnectionId& id : firing_) expired(id);
  }
}

}  // namespace troupe
