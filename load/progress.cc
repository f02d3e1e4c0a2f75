#include "load/progress.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <utility>

#include "absl/time/time.h"
#include "load/histogram.h"

namespace troupe::load {

ProgressReporter::ProgressReporter(const LoadOptions& options, std::vector<const LiveStats*> lives,
                                   int64_t connect_start_ns)
    : options_(options),
      lives_(std::move(lives)),
      connect_start_ns_(connect_start_ns),
      previous_buckets_(LatencyHistogram::BucketCount(), 0),
      buckets_(LatencyHistogram::BucketCount(), 0) {}

void ProgressReporter::StartTraffic(const PhaseTimes* times) {
  times_ = times;
  previous_ns_ = times->start_ns;
}

LoadProgress ProgressReporter::Snapshot() {
  const int64_t now = MonotonicNanos();
  LoadProgress p;
  p.connections_requested = options_.connections;
  p.reconnect = options_.reconnect;
  p.churn = options_.churn;
  uint64_t completed = 0;
  for (const LiveStats* live : lives_) {
    p.connections_established +=
        static_cast<int>(live->established.load(std::memory_order_relaxed));
    p.errors += live->errors.load(std::memory_order_relaxed);
    completed += live->completed.load(std::memory_order_relaxed);
    p.reconnections += live->reconnections.load(std::memory_order_relaxed);
    p.reconnecting += live->reconnecting.load(std::memory_order_relaxed);
  }
  p.messages_completed = completed;
  if (!options_.messages.empty()) {
    p.messages_planned = static_cast<uint64_t>(options_.connections) * options_.messages.size();
  }
  if (times_ == nullptr) {
    p.phase = LoadProgress::Phase::kConnecting;
    p.elapsed = absl::Nanoseconds(now - connect_start_ns_);
    p.total = options_.connect_timeout;
    return p;
  }
  const PhaseTimes& t = *times_;
  if (!options_.messages.empty() && now < t.end_ns) {
    p.phase = LoadProgress::Phase::kScript;
    p.elapsed = absl::Nanoseconds(now - t.start_ns);
    p.total = options_.script_timeout;
  } else if (now < t.measure_start_ns) {
    p.phase = LoadProgress::Phase::kWarmup;
    p.elapsed = absl::Nanoseconds(now - t.start_ns);
    p.total = options_.warmup;
  } else if (now < t.end_ns) {
    p.phase = LoadProgress::Phase::kMeasuring;
    p.elapsed = absl::Nanoseconds(now - t.measure_start_ns);
    p.total = options_.duration;
  } else {
    p.phase = LoadProgress::Phase::kDraining;
  }

  p.interval = absl::Nanoseconds(now - previous_ns_);
  p.interval_messages = completed - std::min(completed, previous_completed_);
  std::fill(buckets_.begin(), buckets_.end(), 0);
  for (const LiveStats* live : lives_) {
    for (size_t i = 0; i < buckets_.size(); ++i) {
      buckets_[i] += live->buckets[i].load(std::memory_order_relaxed);
    }
  }
  uint64_t interval_total = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    const uint64_t now_count = buckets_[i];
    buckets_[i] = now_count - previous_buckets_[i];
    previous_buckets_[i] = now_count;
    interval_total += buckets_[i];
  }
  if (interval_total > 0) {
    p.interval_p99_ns = LatencyHistogram::BucketHighest(
        LatencyHistogram::BucketAtPercentile(buckets_, interval_total, 99));
  }
  previous_ns_ = now;
  previous_completed_ = completed;
  return p;
}

}  // namespace troupe::load
