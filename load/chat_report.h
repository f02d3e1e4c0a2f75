// The reports of echo-load --chat (load/chat.h): human-readable text,
// one-line JSON and two-line CSV, the last two written from one list of
// fields so that they name and order the same values (as load/report.h does
// for the echo load), and the error summary.
//
//   absl::StatusOr<ChatReport> report = RunChat(options);
//   std::cout << FormatChatReportText(*report);
//
// Thread safety: thread-safe (pure functions of their arguments).
#pragma once

#include <string>

#include "load/chat.h"
#include "load/load_client.h"

namespace troupe {

// A few aligned lines, ending in a newline.
std::string FormatChatReportText(const ChatReport& report);
// The error counts by kind, e.g. "lost 3, duplicate 0, reordered 1,
// corrupt 0": those four always, the others only when there are any.
std::string FormatChatErrorKinds(const ChatReport& report);
// One JSON object on one line, ending in a newline; latencies in
// microseconds.
std::string FormatChatReportJson(const ChatReport& report);
// A header line and a value line: the JSON fields, nested names joined by
// '_', the first errors joined by " | " into one field.
std::string FormatChatReportCsv(const ChatReport& report);
// The delivery latencies as an echo LoadReport holds them, for
// FormatPercentileDistribution (load/hdr_output.h, --histogram-out).
LoadReport ChatLatencyAsLoadReport(const ChatReport& report);

}  // namespace troupe
