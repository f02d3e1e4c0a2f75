#include "load/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace troupe {
namespace {

// The documented bound: a reported percentile is never below the true value
// and exceeds it by less than 1/kSubBuckets of it.
constexpr double kMaxRelativeError = 1.0 / LatencyHistogram::kSubBuckets;

// The exact value at `percentile` by the histogram's rank definition.
uint64_t ExactPercentile(std::vector<uint64_t> values, double percentile) {
  std::sort(values.begin(), values.end());
  uint64_t rank =
      static_cast<uint64_t>(std::ceil(percentile / 100.0 * static_cast<double>(values.size())));
  rank = std::clamp<uint64_t>(rank, 1, values.size());
  return values[rank - 1];
}

void ExpectPercentilesWithinBound(const std::vector<uint64_t>& values) {
  LatencyHistogram h;
  for (uint64_t v : values) h.Record(v);
  for (double p : {0.0, 1.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    const uint64_t exact = ExactPercentile(values, p);
    const uint64_t got = h.ValueAtPercentile(p);
    EXPECT_GE(got, exact) << "p" << p;
    EXPECT_LE(static_cast<double>(got), static_cast<double>(exact) * (1 + kMaxRelativeError))
        << "p" << p;
  }
}

TEST(LatencyHistogramTest, EmptyReportsZeros) {
  LatencyHistogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
  EXPECT_EQ(h.ValueAtPercentile(50), 0u);
  EXPECT_EQ(h.ValueAtPercentile(100), 0u);
}

TEST(LatencyHistogramTest, SmallValuesAreExact) {
  LatencyHistogram h;
  for (uint64_t v = 0; v < 2 * LatencyHistogram::kSubBuckets; ++v) h.Record(v);
  EXPECT_EQ(h.ValueAtPercentile(50), LatencyHistogram::kSubBuckets - 1);
  EXPECT_EQ(h.ValueAtPercentile(100), 2 * LatencyHistogram::kSubBuckets - 1);
  EXPECT_EQ(h.ValueAtPercentile(0), 0u);
  EXPECT_EQ(h.min(), 0u);
}

TEST(LatencyHistogramTest, SingleValueIsReportedExactly) {
  LatencyHistogram h;
  h.Record(123'456'789);
  // The bucket's upper edge is clamped to max, so one value comes back as is.
  EXPECT_EQ(h.ValueAtPercentile(0), 123'456'789u);
  EXPECT_EQ(h.ValueAtPercentile(50), 123'456'789u);
  EXPECT_EQ(h.ValueAtPercentile(100), 123'456'789u);
  EXPECT_EQ(h.mean(), 123'456'789.0);
}

TEST(LatencyHistogramTest, UniformPercentilesWithinDocumentedError) {
  std::vector<uint64_t> values;
  for (uint64_t v = 1; v <= 200'000; ++v) values.push_back(v * 7);
  ExpectPercentilesWithinBound(values);
}

TEST(LatencyHistogramTest, LogUniformPercentilesWithinDocumentedError) {
  // Spans 1 ns .. ~17 s, like real latencies with a long tail.
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> exponent(0.0, 34.0);
  std::vector<uint64_t> values;
  for (int i = 0; i < 100'000; ++i) {
    values.push_back(static_cast<uint64_t>(std::exp2(exponent(rng))));
  }
  ExpectPercentilesWithinBound(values);
}

TEST(LatencyHistogramTest, ExponentialPercentilesWithinDocumentedError) {
  std::mt19937_64 rng(7);
  std::exponential_distribution<double> latency(1.0 / 50'000.0);  // mean 50 us
  std::vector<uint64_t> values;
  for (int i = 0; i < 100'000; ++i) {
    values.push_back(static_cast<uint64_t>(latency(rng)) + 1000);
  }
  ExpectPercentilesWithinBound(values);
}

TEST(LatencyHistogramTest, MinMaxMeanAreExact) {
  LatencyHistogram h;
  h.Record(1000);
  h.Record(3000);
  h.Record(1'000'000'007);
  EXPECT_EQ(h.count(), 3u);
  EXPECT_EQ(h.min(), 1000u);
  EXPECT_EQ(h.max(), 1'000'000'007u);
  EXPECT_EQ(h.ValueAtPercentile(100), 1'000'000'007u);
  EXPECT_DOUBLE_EQ(h.mean(), (1000.0 + 3000.0 + 1'000'000'007.0) / 3.0);
}

TEST(LatencyHistogramTest, HandlesTheWholeUint64Range) {
  LatencyHistogram h;
  h.Record(UINT64_MAX);
  h.Record(0);
  EXPECT_EQ(h.max(), UINT64_MAX);
  EXPECT_EQ(h.ValueAtPercentile(100), UINT64_MAX);
  EXPECT_EQ(h.ValueAtPercentile(50), 0u);
  EXPECT_EQ(LatencyHistogram::BucketIndex(UINT64_MAX), LatencyHistogram::BucketCount() - 1);
}

TEST(LatencyHistogramTest, BucketsTileTheRangeWithBoundedWidth) {
  EXPECT_EQ(LatencyHistogram::BucketLowest(0), 0u);
  for (size_t i = 0; i + 1 < LatencyHistogram::BucketCount(); ++i) {
    const uint64_t lo = LatencyHistogram::BucketLowest(i);
    const uint64_t hi = LatencyHistogram::BucketHighest(i);
    ASSERT_EQ(hi + 1, LatencyHistogram::BucketLowest(i + 1)) << "bucket " << i;
    ASSERT_EQ(LatencyHistogram::BucketIndex(lo), i);
    ASSERT_EQ(LatencyHistogram::BucketIndex(hi), i);
    if (lo > 0) {
      ASSERT_LE(static_cast<double>(hi - lo) / static_cast<double>(lo), kMaxRelativeError)
          << "bucket " << i;
    }
  }
  EXPECT_EQ(LatencyHistogram::BucketHighest(LatencyHistogram::BucketCount() - 1), UINT64_MAX);
}

TEST(LatencyHistogramTest, MergeEqualsRecordingEverythingInOne) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<uint64_t> value(1, 10'000'000);
  LatencyHistogram a, b, all;
  for (int i = 0; i < 10'000; ++i) {
    const uint64_t v = value(rng);
    (i % 3 == 0 ? a : b).Record(v);
    all.Record(v);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_DOUBLE_EQ(a.mean(), all.mean());
  for (double p : {10.0, 50.0, 90.0, 99.0, 99.9}) {
    EXPECT_EQ(a.ValueAtPercentile(p), all.ValueAtPercentile(p)) << "p" << p;
  }
}

TEST(LatencyHistogramTest, MergeOfEmptyChangesNothing) {
  LatencyHistogram a, empty;
  a.Record(500);
  a.Merge(empty);
  EXPECT_EQ(a.count(), 1u);
  EXPECT_EQ(a.min(), 500u);
  empty.Merge(a);
  EXPECT_EQ(empty.min(), 500u);
  EXPECT_EQ(empty.max(), 500u);
}

TEST(LatencyHistogramTest, RecordNCountsRepeatedValues) {
  LatencyHistogram h;
  h.RecordN(10, 99);
  h.RecordN(5000, 1);
  h.RecordN(7, 0);  // No-op.
  EXPECT_EQ(h.count(), 100u);
  EXPECT_EQ(h.min(), 10u);
  EXPECT_EQ(h.ValueAtPercentile(99), 10u);
  EXPECT_EQ(h.ValueAtPercentile(99.5), 5000u);
}

TEST(LatencyHistogramTest, ResetForgetsEverything) {
  LatencyHistogram h;
  h.Record(42);
  h.Record(4'200'000);
  h.Reset();
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.ValueAtPercentile(99), 0u);
  h.Record(7);
  EXPECT_EQ(h.min(), 7u);
  EXPECT_EQ(h.ValueAtPercentile(100), 7u);
}

TEST(LatencyHistogramTest, OutOfRangePercentilesAreClamped) {
  LatencyHistogram h;
  h.Record(100);
  h.Record(200);
  EXPECT_EQ(h.ValueAtPercentile(-5), 100u);
  EXPECT_EQ(h.ValueAtPercentile(500), 200u);
}

TEST(LatencyHistogramTest, BucketAtPercentileOfBareCountsMatchesTheHistogram) {
  // Counts kept apart from a histogram (as progress keeps per-interval
  // differences) must give the bucket ValueAtPercentile reads from.
  std::mt19937_64 rng(7);
  std::exponential_distribution<double> latency(1.0 / 250'000);
  LatencyHistogram h;
  std::vector<uint64_t> counts(LatencyHistogram::BucketCount(), 0);
  for (int i = 0; i < 5000; ++i) {
    const uint64_t v = static_cast<uint64_t>(latency(rng)) + 3000;
    h.Record(v);
    ++counts[LatencyHistogram::BucketIndex(v)];
  }
  for (double p : {1.0, 50.0, 90.0, 99.0, 99.9}) {
    const size_t bucket = LatencyHistogram::BucketAtPercentile(counts, h.count(), p);
    EXPECT_EQ(LatencyHistogram::BucketHighest(bucket), h.ValueAtPercentile(p)) << "p" << p;
  }
  // The rank rule's edges: the first value at 0, the last at 100 and above.
  const std::vector<uint64_t> three = {0, 2, 0, 1};
  EXPECT_EQ(LatencyHistogram::BucketAtPercentile(three, 3, 0), 1u);
  EXPECT_EQ(LatencyHistogram::BucketAtPercentile(three, 3, 66.6), 1u);
  EXPECT_EQ(LatencyHistogram::BucketAtPercentile(three, 3, 66.7), 3u);
  EXPECT_EQ(LatencyHistogram::BucketAtPercentile(three, 3, 100), 3u);
  EXPECT_EQ(LatencyHistogram::BucketAtPercentile(three, 3, 1000), 3u);
}

}  // namespace
}  // namespace troupe
