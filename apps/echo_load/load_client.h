// The echo load engine behind `echo-load`: opens many TCP connections to an
// echo server, keeps `pipeline` messages in flight on each (closed loop), and
// verifies every echoed byte against the stream it sent.
//
//   LoadOptions options;
//   options.target = *Address::Parse("127.0.0.1:7007");
//   options.connections = 1000;
//   options.duration = absl::Seconds(10);
//   absl::StatusOr<LoadReport> report = RunLoad(options);
//   if (!report.ok()) { /* "no connection to 127.0.0.1:7007 ...: Connection
//   refused" */ } std::cout << FormatReportText(*report); return report->ok() ?
//   0 : 1;
//
// How it runs:
//   1. connect: `threads` threads, each with its own epoll loop, open their
//      share of the connections (non-blocking, TCP_NODELAY), bounded by
//      `connect_timeout`. Failures are counted, with the first error's text.
//   2. warmup: traffic as below, not measured.
//   3. measure: for `duration`; a message counts when it completes inside this
//      window, and its latency is completion time - issue time.
//   4. drain: no new messages; each connection is closed as soon as all it
//      sent has come back (or after kDrainTimeout). Echoes still in flight at
//      the end are not errors.
//
// The stream: connection i sends a deterministic pseudo-random byte stream
// that starts at its own offset into a shared table with a prime period, so
// a server that mixes up two connections' bytes, drops, duplicates or
// reorders them is caught. Any server that echoes bytes back works: the
// client assumes no framing.
//
// Errors (each fails LoadReport::ok()): connect failures, verification
// mismatches (reported once per connection, which is then closed), and
// connections lost (peer close or reset) before the drain.
//
// Thread safety: RunLoad is thread-safe (it shares nothing but a read-only
// table between calls); the structs are plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/address.h"
#include "core/histogram.h"

namespace troupe {

struct LoadOptions {
  Address target;
  int connections = 100;
  // 0: min(connections, online CPUs).
  int threads = 0;
  size_t message_size = 64;
  // Messages kept in flight per connection.
  int pipeline = 1;
  absl::Duration duration = absl::Seconds(10);
  absl::Duration warmup = absl::ZeroDuration();
  absl::Duration connect_timeout = absl::Seconds(5);
};

struct LoadReport {
  // The first few error messages are kept; the counts cover all of them.
  static constexpr size_t kMaxErrorMessages = 5;

  std::string target;
  int threads = 0;
  size_t message_size = 0;
  int pipeline = 0;

  int connections_requested = 0;
  int connections_established = 0;
  int connections_failed = 0;

  absl::Duration warmup;
  // Wall time of the measured window as the threads actually ran it.
  absl::Duration measured;
  uint64_t messages = 0;
  // Echoed payload bytes that came back in the window (one direction: the
  // bytes sent are the same again).
  uint64_t bytes = 0;
  // Message latencies in nanoseconds.
  LatencyHistogram latency_ns;

  uint64_t verification_errors = 0;
  uint64_t connections_lost = 0;
  std::vector<std::string> first_errors;

  double MessagesPerSecond() const;
  double MebibytesPerSecond() const;
  uint64_t error_count() const {
    return static_cast<uint64_t>(connections_failed) + verification_errors +
           connections_lost;
  }
  bool ok() const { return error_count() == 0; }
};

// Checks `options` without touching the network.
absl::Status ValidateLoadOptions(const LoadOptions& options);

// Runs the whole load (connect, warmup, measure, drain) and blocks until it
// is over: about connect time + warmup + duration. Returns an error when the
// options are invalid or when no connection at all could be established;
// every other failure is counted in the report.
absl::StatusOr<LoadReport> RunLoad(const LoadOptions& options);

// A few aligned human-readable lines, ending in a newline.
std::string FormatReportText(const LoadReport& report);
// One JSON object on one line, ending in a newline. Latencies in microseconds.
std::string FormatReportJson(const LoadReport& report);

// Raises the soft RLIMIT_NOFILE to at least `wanted` descriptors (up to the
// hard limit); fails naming both numbers when the hard limit is too low.
absl::Status RaiseOpenFileLimit(uint64_t wanted);

}  // namespace troupe
