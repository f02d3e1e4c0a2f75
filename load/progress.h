// Progress of a run in flight: turns the workers' live counters into the
// LoadProgress snapshots that LoadOptions::on_progress receives. Intervals
// are diffs between snapshots, so each snapshot's rate and p99 describe only
// the messages completed since the one before.
//
//   ProgressReporter reporter(options, lives, MonotonicNanos());
//   options.on_progress(reporter.Snapshot());  // Connecting.
//   reporter.StartTraffic(&times);
//   options.on_progress(reporter.Snapshot());  // Warmup, measuring, ...
//
// Thread safety: thread-compatible; used by RunLoad's thread only. It reads
// the LiveStats that worker threads write, which is safe at any time.
#pragma once

#include <cstdint>
#include <vector>

#include "load/load_client.h"
#include "load/schedule.h"
#include "load/tally.h"

namespace troupe::load {

class ProgressReporter {
 public:
  // `options` and every LiveStats in `lives` must outlive the reporter.
  ProgressReporter(const LoadOptions& options, std::vector<const LiveStats*> lives,
                   int64_t connect_start_ns);

  // Called once when the traffic starts: intervals start there. `times`
  // must outlive the reporter.
  void StartTraffic(const PhaseTimes* times);

  LoadProgress Snapshot();

 private:
  const LoadOptions& options_;
  const std::vector<const LiveStats*> lives_;
  const int64_t connect_start_ns_;
  const PhaseTimes* times_ = nullptr;  // Null while connecting.
  int64_t previous_ns_ = 0;
  uint64_t previous_completed_ = 0;
  std::vector<uint64_t> previous_buckets_;  // Summed over workers.
  std::vector<uint64_t> buckets_;           // Scratch: this interval's.
};

}  // namespace troupe::load
