#include "load/chat_report.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "load/histogram.h"
#include "load/report_fields.h"

namespace troupe {
namespace {

double Micros(uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

using Field = ReportField;

// The report's fields in output order, adjacent when they share an object.
// New fields go at the end of their object.
std::vector<Field> ReportFields(const ChatReport& r) {
  std::vector<Field> f;
  auto add_number = [&](std::vector<absl::string_view> path, std::string text) {
    f.push_back({std::move(path), text, text});
  };
  auto fixed = [](double v, int digits) { return absl::StrFormat("%.*f", digits, v); };
  const LatencyHistogram& h = r.latency_ns;
  {
    Field target{{"target"}, "", ""};
    AppendJsonString(target.json, r.target);
    AppendCsvField(target.csv, r.target);
    f.push_back(std::move(target));
  }
  f.push_back({{"mode"}, "\"chat\"", "chat"});
  add_number({"threads"}, absl::StrCat(r.threads));
  add_number({"members"}, absl::StrCat(r.members));
  add_number({"talkers"}, absl::StrCat(r.talkers));
  add_number({"line_size"}, absl::StrCat(r.line_size));
  add_number({"pipeline"}, absl::StrCat(r.pipeline));
  add_number({"rate"}, fixed(r.rate, 1));
  add_number({"source_addresses"}, absl::StrCat(r.source_addresses));
  add_number({"warmup_s"}, fixed(absl::ToDoubleSeconds(r.warmup), 3));
  add_number({"measured_s"}, fixed(absl::ToDoubleSeconds(r.measured), 3));
  add_number({"lines_sent"}, absl::StrCat(r.lines_sent));
  add_number({"lines_measured"}, absl::StrCat(r.lines_measured));
  add_number({"lines_per_s"}, fixed(r.LinesPerSecond(), 1));
  add_number({"deliveries"}, absl::StrCat(r.deliveries));
  add_number({"deliveries_expected"}, absl::StrCat(r.expected_deliveries));
  add_number({"deliveries_measured"}, absl::StrCat(r.deliveries_measured));
  add_number({"deliveries_per_s"}, fixed(r.DeliveriesPerSecond(), 1));
  add_number({"latency_us", "p50"}, fixed(Micros(h.ValueAtPercentile(50)), 1));
  add_number({"latency_us", "p90"}, fixed(Micros(h.ValueAtPercentile(90)), 1));
  add_number({"latency_us", "p99"}, fixed(Micros(h.ValueAtPercentile(99)), 1));
  add_number({"latency_us", "p99_9"}, fixed(Micros(h.ValueAtPercentile(99.9)), 1));
  add_number({"latency_us", "max"}, fixed(Micros(h.max()), 1));
  add_number({"latency_us", "mean"}, fixed(h.mean() / 1000.0, 1));
  add_number({"latency_us", "count"}, absl::StrCat(h.count()));
  add_number({"errors", "total"}, absl::StrCat(r.error_count()));
  add_number({"errors", "lost"}, absl::StrCat(r.lost));
  add_number({"errors", "duplicate"}, absl::StrCat(r.duplicates));
  add_number({"errors", "reordered"}, absl::StrCat(r.reordered));
  add_number({"errors", "corrupt"}, absl::StrCat(r.corrupt));
  add_number({"errors", "closed"}, absl::StrCat(r.closed));
  add_number({"errors", "stalled"}, absl::StrCat(r.stalled));
  add_number({"errors", "no_deliveries"}, r.no_deliveries ? "1" : "0");
  {
    Field first{{"errors", "first"}, "[", ""};
    for (size_t i = 0; i < r.first_errors.size(); ++i) {
      if (i > 0) first.json.push_back(',');
      AppendJsonString(first.json, r.first_errors[i]);
    }
    first.json.push_back(']');
    AppendCsvField(first.csv, absl::StrJoin(r.first_errors, " | "));
    f.push_back(std::move(first));
  }
  add_number({"ok"}, r.ok() ? "true" : "false");
  return f;
}

}  // namespace

std::string FormatChatErrorKinds(const ChatReport& r) {
  std::string out = absl::StrFormat("lost %d, duplicate %d, reordered %d, corrupt %d", r.lost,
                                    r.duplicates, r.reordered, r.corrupt);
  if (r.closed > 0) absl::StrAppendFormat(&out, ", closed %d", r.closed);
  if (r.stalled > 0) absl::StrAppendFormat(&out, ", stalled %d", r.stalled);
  if (r.no_deliveries) out += ", nothing delivered";
  return out;
}

std::string FormatChatReportText(const ChatReport& r) {
  std::string out;
  absl::StrAppendFormat(&out, "%-14s%s (chat room; %d thread%s, %d-byte lines, pipeline %d)\n",
                        "target", r.target, r.threads, r.threads == 1 ? "" : "s", r.line_size,
                        r.pipeline);
  absl::StrAppendFormat(&out, "%-14s%d (%d of them talking)", "members", r.members, r.talkers);
  if (r.source_addresses > 1) {
    absl::StrAppendFormat(&out, " from 127.0.0.1..127.0.0.%d", r.source_addresses);
  }
  out.push_back('\n');
  if (r.rate > 0) {
    absl::StrAppendFormat(&out,
                          "%-14s%.1f lines/s scheduled (open loop; latency from the intended send "
                          "time)\n",
                          "rate", r.rate);
  }
  absl::StrAppendFormat(&out, "%-14s%.2f s (after %.2f s warmup)\n", "measured",
                        absl::ToDoubleSeconds(r.measured), absl::ToDoubleSeconds(r.warmup));
  absl::StrAppendFormat(&out, "%-14s%d sent in the window (%.1f lines/s)\n", "lines",
                        r.lines_measured, r.LinesPerSecond());
  absl::StrAppendFormat(&out, "%-14s%d in the window (%.1f/s: lines received by members)\n",
                        "deliveries", r.deliveries_measured, r.DeliveriesPerSecond());
  absl::StrAppendFormat(
      &out, "%-14s%d lines sent x %d other members = %d deliveries due, %d made\n", "whole run",
      r.lines_sent, r.members - 1, r.expected_deliveries, r.deliveries);
  const LatencyHistogram& h = r.latency_ns;
  if (h.count() == 0) {
    absl::StrAppendFormat(&out, "%-14s%s\n", "latency (us)", "n/a (nothing delivered)");
  } else {
    absl::StrAppendFormat(&out,
                          "%-14sp50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n",
                          "latency (us)", Micros(h.ValueAtPercentile(50)),
                          Micros(h.ValueAtPercentile(90)), Micros(h.ValueAtPercentile(99)),
                          Micros(h.ValueAtPercentile(99.9)), Micros(h.max()), h.mean() / 1000.0);
  }
  if (r.ok()) {
    absl::StrAppendFormat(&out, "%-14s%s\n", "errors", "none");
  } else {
    absl::StrAppendFormat(&out, "%-14s%d (%s)\n", "errors", r.error_count(),
                          FormatChatErrorKinds(r));
    for (const std::string& e : r.first_errors) absl::StrAppend(&out, "  ", e, "\n");
  }
  return out;
}

std::string FormatChatReportJson(const ChatReport& r) { return FieldsToJson(ReportFields(r)); }

std::string FormatChatReportCsv(const ChatReport& r) { return FieldsToCsv(ReportFields(r)); }

LoadReport ChatLatencyAsLoadReport(const ChatReport& r) {
  LoadReport load;
  load.latency_ns = r.latency_ns;
  load.latency_buckets = r.latency_buckets;
  return load;
}

}  // namespace troupe
