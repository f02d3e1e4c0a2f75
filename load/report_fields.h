// The one writer of echo-load's machine-readable reports. A report (the load
// run's, the chat room's, the knee search's) lists its values once, as
// fields with a path and their JSON and CSV texts; this file turns that list
// into one JSON object (nested one level where paths share a first element)
// and into CSV (a header of the paths joined by '_', and a value line), so
// the two forms always name and order the same values.
//
//   std::vector<ReportField> f;
//   f.push_back({{"latency_us", "p99"}, "12.5", "12.5"});
//   std::string json = FieldsToJson(f);   // {"latency_us":{"p99":12.5}}\n
//   std::string csv = FieldsToCsv(f);     // latency_us_p99\n12.5\n
//
// Thread safety: thread-safe (pure functions of their arguments).
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace troupe {

struct ReportField {
  // One or two names; fields that share a first name must be adjacent.
  std::vector<absl::string_view> path;
  std::string json;  // the value as JSON text (a number, "quoted", [..])
  std::string csv;   // the value as one CSV field
};

// `s` as a JSON string, quoted and escaped (UTF-8 passes through).
void AppendJsonString(std::string& out, absl::string_view s);
// `s` as one RFC 4180 field: quoted when it holds a comma, quote or line
// break.
void AppendCsvField(std::string& out, absl::string_view s);

// One JSON object on one line, ending in a newline.
std::string FieldsToJson(const std::vector<ReportField>& fields);
// Two lines, each ending in a newline: the header and the values.
std::string FieldsToCsv(const std::vector<ReportField>& fields);

}  // namespace troupe
