#include "load/histogram.h"

#include <algorithm>
#include <cmath>

namespace troupe {
namespace {

// Layout of the bucket index, with S = kSubBuckets = 128:
//
//   value range          bucket width   indices
//   [0, 2S)              1              [0, 2S)           exact
//   [2S, 4S)             2              [2S, 3S)
//   [4S, 8S)             4              [3S, 4S)
//   ...                  ...            ...
//   [2^63, 2^64)         2^56           [57S, 58S)
//
// `shift` is log2 of the bucket width; the index is (shift * S) plus the value
// shifted down into [S, 2S), which makes the ranges above line up end to end.
constexpr int kExactBits = LatencyHistogram::kSubBucketBits + 1;
constexpr size_t kBucketCount = (64 - kExactBits + 2) * LatencyHistogram::kSubBuckets;

int ShiftOfIndex(size_t index) {
  return index < 2 * LatencyHistogram::kSubBuckets
             ? 0
             : static_cast<int>(index >> LatencyHistogram::kSubBucketBits) - 1;
}

}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(kBucketCount, 0) {}

size_t LatencyHistogram::BucketCount() { return kBucketCount; }

size_t LatencyHistogram::BucketIndex(uint64_t value) {
  if (value < 2 * kSubBuckets) return static_cast<size_t>(value);
  const int msb = 63 - __builtin_clzll(value);
  const int shift = msb - kSubBucketBits;
  return (static_cast<size_t>(shift) << kSubBucketBits) + static_cast<size_t>(value >> shift);
}

uint64_t LatencyHistogram::BucketLowest(size_t index) {
  const int shift = ShiftOfIndex(index);
  const uint64_t sub = index - (static_cast<uint64_t>(shift) << kSubBucketBits);
  return sub << shift;
}

uint64_t LatencyHistogram::BucketHighest(size_t index) {
  const int shift = ShiftOfIndex(index);
  // Written as lowest + (width - 1) so that the last bucket ends at 2^64 - 1
  // without overflowing.
  return BucketLowest(index) + ((uint64_t{1} << shift) - 1);
}

void LatencyHistogram::RecordN(uint64_t value, uint64_t n) {
  if (n == 0) return;
  counts_[BucketIndex(value)] += n;
  count_ += n;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<double>(value) * static_cast<double>(n);
}

void LatencyHistogram::AddCounts(std::vector<uint64_t>& into, const std::vector<uint64_t>& from) {
  if (into.size() < from.size()) into.resize(from.size(), 0);
  for (size_t i = 0; i < from.size(); ++i) into[i] += from[i];
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  for (size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void LatencyHistogram::Reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
  sum_ = 0;
}

double LatencyHistogram::mean() const {
  return count_ == 0 ? 0.0 : sum_ / static_cast<double>(count_);
}

size_t LatencyHistogram::BucketAtPercentile(std::span<const uint64_t> counts, uint64_t total,
                                            double percentile) {
  // Written so that NaN, which fails every comparison, reads as 0.
  if (!(percentile > 0)) percentile = 0;
  if (percentile > 100) percentile = 100;
  // The rank of the wanted value, 1-based: the smallest value such that at
  // least `percentile` percent of the values are <= it.
  uint64_t rank = static_cast<uint64_t>(std::ceil(percentile / 100.0 * static_cast<double>(total)));
  rank = std::clamp<uint64_t>(rank, 1, total);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (seen >= rank) return i;
  }
  // Only when the counts sum to less than `total`.
  return counts.empty() ? 0 : counts.size() - 1;
}

uint64_t LatencyHistogram::ValueAtPercentile(double percentile) const {
  if (count_ == 0) return 0;
  // The bucket's upper edge, but never beyond what was actually recorded.
  return std::clamp(BucketHighest(BucketAtPercentile(counts_, count_, percentile)), min_, max_);
}

uint64_t LatencyHistogram::CountAbove(uint64_t value) const {
  uint64_t above = 0;
  for (size_t i = BucketIndex(value) + 1; i < kBucketCount; ++i) above += counts_[i];
  return above;
}

}  // namespace troupe
