#include "load/chat_tracker.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace troupe::load {

ChatTracker::ChatTracker(size_t members, int talkers, uint64_t pipeline)
    : pipeline_(pipeline),
      talkers_(static_cast<size_t>(talkers)),
      ring_(static_cast<size_t>(talkers) * pipeline, 0),
      next_(members * static_cast<size_t>(talkers), 0) {}

ChatTracker::Receipt ChatTracker::Receive(size_t member, int talker, uint64_t seq) {
  const size_t slot = Slot(member, talker);
  uint64_t& next = next_[slot];
  Receipt r;
  if (seq < next) {
    // Counted lost when a later line came first: it was only late.
    if (gaps_.erase(std::make_pair(uint64_t{slot}, seq)) > 0) {
      r.kind = kReordered;
      r.previous = next - 1;
    } else {
      r.kind = kDuplicate;
    }
    return r;
  }
  r.skipped = seq - next;
  for (uint64_t s = next; s < seq && gaps_.size() < kMaxGaps; ++s) {
    gaps_.insert(std::make_pair(uint64_t{slot}, s));
  }
  PerTalker& pt = talkers_[static_cast<size_t>(talker)];
  if (pt.listeners > 0) {
    // next >= done: done passes a line only once every listener has it;
    // seq < done + pipeline: the talker sends no further.
    uint32_t* ring = Ring(talker);
    for (uint64_t s = next; s <= seq; ++s) ++ring[s % pipeline_];
  }
  next = seq + 1;
  Settle(talker);
  return r;
}

void ChatTracker::SetListeners(int talker, int listeners) {
  PerTalker& pt = talkers_[static_cast<size_t>(talker)];
  pt.listeners = listeners;
  pt.done = listeners > 0 ? 0 : kAll;
  pt.changed = true;
}

void ChatTracker::Settle(int talker) {
  PerTalker& pt = talkers_[static_cast<size_t>(talker)];
  if (pt.listeners == 0) return;
  uint32_t* ring = Ring(talker);
  while (ring[pt.done % pipeline_] >= static_cast<uint32_t>(pt.listeners)) {
    ring[pt.done % pipeline_] = 0;
    ++pt.done;
    pt.changed = true;
  }
}

void ChatTracker::Drop(size_t member, int own_talker) {
  for (size_t t = 0; t < talkers_.size(); ++t) {
    const int talker = static_cast<int>(t);
    PerTalker& pt = talkers_[t];
    if (talker == own_talker || pt.listeners == 0) continue;
    uint32_t* ring = Ring(talker);
    for (uint64_t s = pt.done; s < next_[Slot(member, talker)]; ++s) --ring[s % pipeline_];
    if (--pt.listeners == 0) {
      std::fill(ring, ring + pipeline_, 0);
      pt.done = kAll;
      pt.changed = true;
    } else {
      Settle(talker);
    }
  }
}

}  // namespace troupe::load
