// LatencyHistogram: a log-linear bucketed histogram of uint64 values (usually
// nanoseconds), in the manner of HdrHistogram (Gil Tene): every power-of-two
// range [2^m, 2^(m+1)) is split into kSubBuckets equal-width buckets, and
// values below kSubBuckets get one bucket each. Record() is an index
// computation and an increment into a fixed array; it never allocates.
//
//   LatencyHistogram h;
//   h.Record(absl::ToInt64Nanoseconds(elapsed));
//   other_thread_histogram.Merge(h);
//   uint64_t p99 = h.ValueAtPercentile(99.0);   // within 0.8% above the truth
//
// Accuracy: ValueAtPercentile returns the highest value of the bucket that
// holds the requested rank (clamped to max()), so it never under-reports and
// over-reports by less than 1/128 (0.78%) of the true value; values below 256
// are exact. min(), max(), count() and mean() are exact.
//
// Memory: about 59 KiB per histogram (allocated once, at construction), which
// covers the whole uint64 range, so no value is ever out of range.
//
// Thread safety: thread-compatible. Keep one per thread and Merge() at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace troupe {

class LatencyHistogram {
 public:
  // 2^kSubBucketBits buckets per power-of-two range: the relative error bound
  // is 1 / 2^kSubBucketBits.
  static constexpr int kSubBucketBits = 7;
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBucketBits;

  LatencyHistogram();

  void Record(uint64_t value) { RecordN(value, 1); }
  // Records `value` `n` times.
  void RecordN(uint64_t value, uint64_t n);
  // Adds every value recorded in `other`.
  void Merge(const LatencyHistogram& other);
  void Reset();

  uint64_t count() const { return count_; }
  // 0 when empty.
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  double mean() const;

  // `percentile` in [0, 100] (clamped). Returns the upper edge of the bucket
  // holding the value at that rank, clamped to [min(), max()]; 0 when empty.
  uint64_t ValueAtPercentile(double percentile) const;
  // How many recorded values lie in the buckets above the one holding
  // `value`: the values above `value`, less those sharing its bucket (under
  // 0.8% of it wide). O(BucketCount()).
  uint64_t CountAbove(uint64_t value) const;

  // The index of the bucket holding the value at `percentile` of bare
  // counts per bucket (in BucketIndex order) that sum to `total` > 0: the
  // rank rule of ValueAtPercentile, for callers that keep counts of their
  // own (per-interval differences, say) rather than a histogram.
  static size_t BucketAtPercentile(std::span<const uint64_t> counts, uint64_t total,
                                   double percentile);
  // Adds bare per-bucket counts `from` into `into` (grown to fit): a
  // report's summed counts from each thread's.
  static void AddCounts(std::vector<uint64_t>& into, const std::vector<uint64_t>& from);

  // Bucket geometry, exposed for tests and for exporters.
  static size_t BucketIndex(uint64_t value);
  static uint64_t BucketLowest(size_t index);
  static uint64_t BucketHighest(size_t index);
  static size_t BucketCount();

 private:
  std::vector<uint64_t> counts_;  // BucketCount() entries, never resized.
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  // A double, not a uint64: a sum of nanoseconds from many threads may exceed
  // 2^64 over long runs; a mean needs no more than double precision.
  double sum_ = 0;
};

}  // namespace troupe
