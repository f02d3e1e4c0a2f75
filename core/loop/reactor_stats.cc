#include "core/loop/reactor_stats.h"

#include <algorithm>

namespace troupe {

void ReactorStats::Add(const ReactorStats& other) {
#define TROUPE_COMBINE_Sum(name) name += other.name;
#define TROUPE_COMBINE_Max(name) name = std::max(name, other.name);
#define TROUPE_COMBINE_None(name)
#define TROUPE_COUNTER_ADD(name, combine, ...) TROUPE_COMBINE_##combine(name)
  TROUPE_REACTOR_COUNTERS(TROUPE_COUNTER_ADD)
#undef TROUPE_COUNTER_ADD
#undef TROUPE_COMBINE_None
#undef TROUPE_COMBINE_Max
#undef TROUPE_COMBINE_Sum
  for (size_t i = 0; i < mail_dropped_by_reason.size(); ++i) {
    mail_dropped_by_reason[i] += other.mail_dropped_by_reason[i];
  }
  for (size_t i = 0; i < closed_by_reason.size(); ++i) {
    closed_by_reason[i] += other.closed_by_reason[i];
  }
  for (size_t i = 0; i < turn_buckets.size(); ++i) turn_buckets[i] += other.turn_buckets[i];
}

void ReactorCounters::RecordTurn(int64_t ns) {
  Bump(turn_sum_ns, static_cast<uint64_t>(ns));
  const int64_t us = ns / 1000;
  for (size_t i = 0; i < ReactorStats::kTurnBucketsUs.size(); ++i) {
    if (us <= ReactorStats::kTurnBucketsUs[i]) Bump(turn_buckets[i]);
  }
  Bump(turn_buckets.back());
}

ReactorStats ReactorCounters::Snapshot() const {
  ReactorStats s;
#define TROUPE_COPY_Own(name) s.name = name.load(std::memory_order_relaxed);
#define TROUPE_COPY_Derived(name)
#define TROUPE_COUNTER_COPY(name, combine, source, ...) TROUPE_COPY_##source(name)
  TROUPE_REACTOR_COUNTERS(TROUPE_COUNTER_COPY)
#undef TROUPE_COUNTER_COPY
#undef TROUPE_COPY_Derived
#undef TROUPE_COPY_Own
  for (size_t i = 0; i < s.mail_dropped_by_reason.size(); ++i) {
    s.mail_dropped_by_reason[i] = mail_dropped_by_reason[i].load(std::memory_order_relaxed);
  }
  for (size_t i = 0; i < s.closed_by_reason.size(); ++i) {
    s.closed_by_reason[i] = closed_by_reason[i].load(std::memory_order_relaxed);
  }
  for (size_t i = 0; i < s.turn_buckets.size(); ++i) {
    s.turn_buckets[i] = turn_buckets[i].load(std::memory_order_relaxed);
  }
  return s;
}

}  // namespace troupe
