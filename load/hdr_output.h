// HdrHistogram's text output for echo-load's --histogram-out: a report's
// latency distribution in the layout of outputPercentileDistribution (Gil
// Tene's HdrHistogram), which HdrHistogram's plotter and scripts/plot read.
//
//   histogram_file << FormatPercentileDistribution(*report);
//
// Thread safety: thread-safe (a pure function of its argument).
#pragma once

#include <string>

#include "load/load_client.h"

namespace troupe {

// The latency distribution in HdrHistogram's percentile format ("Value
// Percentile TotalCount 1/(1-Percentile)", values in microseconds). Needs
// report.latency_buckets.
std::string FormatPercentileDistribution(const LoadReport& report);

}  // namespace troupe
