// The reports echo-load prints: the human-readable text, one-line JSON and
// two-line CSV forms of a LoadReport, and the progress line of a
// LoadProgress. JSON and CSV are written from one list of fields, so the two
// name and order the same values.
//
//   absl::StatusOr<LoadReport> report = RunLoad(options);
//   std::cout << FormatReportText(*report);
//
// Thread safety: thread-safe (pure functions of their arguments).
#pragma once

#include <string>

#include "load/load_client.h"

namespace troupe {

// A few aligned human-readable lines, ending in a newline.
std::string FormatReportText(const LoadReport& report);
// The error counts by kind, e.g. "connect 0, verification 0, lost 0,
// stalled 2, no messages completed": the first three always, the others only
// when there are any. The text report's and echo-load's summary.
std::string FormatErrorKinds(const LoadReport& report);
// One JSON object on one line, ending in a newline. Latencies in microseconds.
std::string FormatReportJson(const LoadReport& report);
// Two lines, a header and the values: the JSON report's fields with nested
// names joined by '_' (connections_requested, latency_us_p99, ...); the
// first errors are joined by " | " into one field.
std::string FormatReportCsv(const LoadReport& report);
// One line without a newline, e.g.
//   "3.5s/10s  2000 msg/s  p99 812.3us  errors 0  conns 8123"
std::string FormatProgressLine(const LoadProgress& progress);

}  // namespace troupe
