// What one worker thread counts while it runs: its share of the report
// (WorkerResult, which RunLoad adds up once the thread is done) and the live
// counters that progress snapshots read meanwhile. Every error kind is
// counted, published and its message kept in one place, here.
//
//   WorkerTally tally;
//   tally.Completed(latency_ns, /*measured=*/now >= measure_start_ns);
//   tally.Stalled(absl::StrFormat("connection %d stalled: ...", index));
//   tally.Finish();  // After the drain: the buckets without the warmup.
//
// Thread safety: one writer, the worker thread, for all of it. live() may be
// read from any thread at any time; result() only once the worker is done.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "load/histogram.h"
#include "load/load_client.h"

namespace troupe::load {

// What a worker publishes while it runs, for progress reports. One writer
// (the worker), any number of readers: the worker updates each counter with
// a relaxed load and store, which on x86-64 are plain moves (no locked
// instruction on the per-message path); readers load relaxed and may see
// counters a few messages apart, which a progress line tolerates.
struct alignas(64) LiveStats {
  std::atomic<uint64_t> completed{0};  // Messages echoed, warmup included.
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> established{0};
  std::atomic<uint64_t> reconnections{0};
  // Connections in a reconnect's backoff or handshake now (a gauge).
  std::atomic<uint64_t> reconnecting{0};
  // Latency counts per LatencyHistogram bucket, warmup included; never reset.
  std::unique_ptr<std::atomic<uint64_t>[]> buckets {
    new std::atomic<uint64_t>[ LatencyHistogram::BucketCount() ]()
  };
};

// A worker's share of the report, and what RunLoad needs to assemble it.
struct WorkerResult {
  LoadTally counts;
  std::string first_connect_error;
  std::vector<std::string> errors;  // At most LoadReport::kMaxErrorMessages.
  int64_t loop_end_ns = 0;          // When the measured loop stopped.
};

class WorkerTally {
 public:
  WorkerTally();

  void Established();
  // The first failure's text is kept for the report.
  void ConnectFailed(absl::string_view why);
  // One message echoed `latency_ns` after it was issued (or due); `measured`:
  // it completed inside the measured window.
  void Completed(uint64_t latency_ns, bool measured);
  // Open loop: the same message's latency from its actual send (see
  // LoadTally::latency_actual_ns); only for a message counted as measured.
  void CompletedSinceSend(uint64_t latency_ns) {
    result_.counts.latency_actual_ns.Record(latency_ns);
  }
  // Echoed bytes that came back inside the measured window.
  void MeasuredBytes(uint64_t n) { result_.counts.bytes += n; }

  // The error kinds of a connection; each counts one and keeps `message`
  // while fewer than LoadReport::kMaxErrorMessages are kept.
  void VerificationFailed(std::string message);
  void Lost(std::string message);
  void Stalled(std::string message);
  void Incomplete(std::string message);
  void TimedOut(std::string message);

  // LoadOptions::reconnect: the server ended a stream, with `unanswered`
  // bytes sent and not echoed and `abandoned` messages in flight.
  void StreamEnded(uint64_t unanswered, uint64_t abandoned);
  // The connection now waits to be opened again.
  void ReconnectPending();
  // A reconnect attempt failed (retried, not an error).
  void ReconnectFailed() { ++result_.counts.reconnect_failures; }
  // The connection is open again.
  void Reconnected();
  // A connection waiting to reconnect gave up (the drain ended, or the run
  // was aborted); `down`: counted as connections_down, with `message`.
  void StopReconnecting(bool down, std::string message);

  // LoadOptions::churn: a cycle's connect succeeded, or failed (an error
  // kind, with `message` kept like the others').
  void ChurnConnected() { ++result_.counts.churn_connects; }
  void ChurnConnectFailed(std::string message);

  // The traffic loop stopped at `now_ns`: the measured window is over.
  void EndLoop(int64_t now_ns);
  // After the drain: the latency buckets of the measured messages only.
  void Finish();

  WorkerResult& result() { return result_; }
  const LiveStats& live() const { return live_; }

 private:
  void CountError(uint64_t& counter, std::string message);
  // Copies the live buckets: what they hold so far is warmup.
  void TakeWarmupSnapshot();

  LiveStats live_;
  WorkerResult result_;
  bool warmup_snapshot_taken_ = false;
  std::vector<uint64_t> warmup_buckets_;
};

}  // namespace troupe::load
