#include "load/tally.h"

#include <cstddef>
#include <utility>

namespace troupe::load {
namespace {

// Only the owning worker calls this, so a load and a store cannot lose an
// increment.
inline void Bump(std::atomic<uint64_t>& counter, uint64_t n) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// The same for a gauge going down.
inline void Drop(std::atomic<uint64_t>& counter) {
  counter.store(counter.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

}  // namespace

WorkerTally::WorkerTally() : warmup_buckets_(LatencyHistogram::BucketCount(), 0) {}

void WorkerTally::Established() {
  ++result_.counts.connections_established;
  Bump(live_.established, 1);
}

void WorkerTally::ConnectFailed(absl::string_view why) {
  if (result_.counts.connections_failed++ == 0) {
    result_.first_connect_error = std::string(why);
  }
  Bump(live_.errors, 1);
}

void WorkerTally::Completed(uint64_t latency_ns, bool measured) {
  // The first measured completion ends the warmup's share of the buckets;
  // whether a message counts is decided by its completion time, so the
  // boundary needs no wake-up of its own.
  if (measured && !warmup_snapshot_taken_) TakeWarmupSnapshot();
  Bump(live_.buckets[LatencyHistogram::BucketIndex(latency_ns)], 1);
  Bump(live_.completed, 1);
  if (measured) {
    result_.counts.latency_ns.Record(latency_ns);
    ++result_.counts.messages;
  }
}

void WorkerTally::VerificationFailed(std::string message) {
  CountError(result_.counts.verification_errors, std::move(message));
}

void WorkerTally::Lost(std::string message) {
  CountError(result_.counts.connections_lost, std::move(message));
}

void WorkerTally::Stalled(std::string message) {
  CountError(result_.counts.connections_stalled, std::move(message));
}

void WorkerTally::Incomplete(std::string message) {
  CountError(result_.counts.connections_incomplete, std::move(message));
}

void WorkerTally::TimedOut(std::string message) {
  CountError(result_.counts.connections_timed_out, std::move(message));
}

void WorkerTally::ChurnConnectFailed(std::string message) {
  CountError(result_.counts.churn_connect_failures, std::move(message));
}

void WorkerTally::StreamEnded(uint64_t unanswered, uint64_t abandoned) {
  result_.counts.unanswered_bytes += unanswered;
  result_.counts.abandoned_messages += abandoned;
}

void WorkerTally::ReconnectPending() { Bump(live_.reconnecting, 1); }

void WorkerTally::Reconnected() {
  ++result_.counts.reconnections;
  Bump(live_.reconnections, 1);
  Drop(live_.reconnecting);
}

void WorkerTally::StopReconnecting(bool down, std::string message) {
  Drop(live_.reconnecting);
  if (down) CountError(result_.counts.connections_down, std::move(message));
}

void WorkerTally::CountError(uint64_t& counter, std::string message) {
  ++counter;
  Bump(live_.errors, 1);
  if (result_.errors.size() < LoadReport::kMaxErrorMessages) {
    result_.errors.push_back(std::move(message));
  }
}

void WorkerTally::EndLoop(int64_t now_ns) {
  result_.loop_end_ns = now_ns;
  // A run whose measured window completed nothing: all of it was warmup.
  if (!warmup_snapshot_taken_) TakeWarmupSnapshot();
}

void WorkerTally::Finish() {
  const size_t buckets = LatencyHistogram::BucketCount();
  result_.counts.latency_buckets.resize(buckets);
  for (size_t i = 0; i < buckets; ++i) {
    result_.counts.latency_buckets[i] =
        live_.buckets[i].load(std::memory_order_relaxed) - warmup_buckets_[i];
  }
}

void WorkerTally::TakeWarmupSnapshot() {
  warmup_snapshot_taken_ = true;
  for (size_t i = 0; i < warmup_buckets_.size(); ++i) {
    warmup_buckets_[i] = live_.buckets[i].load(std::memory_order_relaxed);
  }
}

}  // namespace troupe::load
