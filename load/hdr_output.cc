#include "load/hdr_output.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/strings/str_format.h"
#include "load/histogram.h"

namespace troupe {
namespace {

double Micros(uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

}  // namespace

std::string FormatPercentileDistribution(const LoadReport& r) {
  // The layout of HdrHistogram's outputPercentileDistribution (Gil Tene),
  // with 5 reporting ticks per half distance, values scaled to microseconds.
  std::string out = absl::StrFormat("%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount",
                                    "1/(1-Percentile)");
  const std::vector<uint64_t>& counts = r.latency_buckets;
  const LatencyHistogram& h = r.latency_ns;
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  auto value_us = [&](size_t i) {
    return Micros(
        std::clamp(LatencyHistogram::BucketHighest(i), h.min(), std::max(h.min(), h.max())));
  };
  double sum_squares = 0;
  if (total > 0) {
    constexpr int kTicksPerHalfDistance = 5;
    double level = 0;  // Percent.
    uint64_t seen = 0;
    size_t last = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      if (counts[i] == 0) continue;
      seen += counts[i];
      last = i;
      const double mid = (static_cast<double>(LatencyHistogram::BucketLowest(i)) +
                          static_cast<double>(LatencyHistogram::BucketHighest(i))) /
                         2.0;
      const double d = mid - h.mean();
      sum_squares += d * d * static_cast<double>(counts[i]);
      while (100.0 * static_cast<double>(seen) / static_cast<double>(total) >= level) {
        absl::StrAppendFormat(&out, "%12.3f %2.12f %10d %14.2f\n", value_us(i), level / 100.0, seen,
                              1.0 / (1.0 - level / 100.0));
        // HdrHistogram's PercentileIterator: the step halves each time the
        // distance to 100% halves.
        const double halvings = std::floor(std::log2(100.0 / (100.0 - level)));
        level += 100.0 / (kTicksPerHalfDistance * std::pow(2.0, halvings + 1));
        if (seen == total) break;  // One row in the last bucket, then 100%.
      }
    }
    absl::StrAppendFormat(&out, "%12.3f %2.12f %10d %14s\n", value_us(last), 1.0, total, "inf");
  }
  const double stddev = total > 0 ? std::sqrt(sum_squares / static_cast<double>(total)) : 0.0;
  absl::StrAppendFormat(&out, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", h.mean() / 1000.0,
                        stddev / 1000.0);
  absl::StrAppendFormat(&out, "#[Max     = %12.3f, Total count    = %12d]\n", Micros(h.max()),
                        total);
  absl::StrAppendFormat(&out, "#[Buckets = %12d, SubBuckets     = %12d]\n",
                        LatencyHistogram::BucketCount(), LatencyHistogram::kSubBuckets);
  return out;
}

}  // namespace troupe
