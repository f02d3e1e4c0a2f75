#include "load/report.h"

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
#include "load/framing.h"
#include "load/histogram.h"
#include "load/report_fields.h"

namespace troupe {
namespace {

double Micros(uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

// The mode a report describes, as JSON and CSV name it.
const char* ModeName(const LoadReport& r) {
  if (r.churn) return "churn";
  if (r.script_messages > 0) return "script";
  return r.rate > 0 ? "open" : "closed";
}

// Connect errors of either kind: the connect phase's, or (churn) the cycles'.
uint64_t ConnectErrors(const LoadReport& r) {
  return static_cast<uint64_t>(r.connections_failed) + r.churn_connect_failures;
}

// The text report's "client" line (LoadReport::client); nothing for a
// hand-made report, which measured no thread.
void AppendClientLine(std::string& out, const LoadReport& r) {
  const ClientLoad& c = r.client;
  if (c.busiest_thread < 0) return;
  absl::StrAppendFormat(&out, "%-14sbusiest thread %d of %d at %.0f%% CPU", "client",
                        c.busiest_thread, c.thread_busy.size(), c.busiest_busy * 100);
  if (c.send_lag_ns.count() > 0) {
    absl::StrAppendFormat(&out, ", send lag p50 %.1fus p99 %.1fus",
                          Micros(c.send_lag_ns.ValueAtPercentile(50)),
                          Micros(c.send_lag_ns.ValueAtPercentile(99)));
  }
  if (c.saturated) out += ": SATURATED, the figures may be the client's limit";
  out.push_back('\n');
}

}  // namespace

std::string FormatErrorKinds(const LoadReport& r) {
  std::string out = absl::StrFormat("connect %d, verification %d, lost %d", ConnectErrors(r),
                                    r.verification_errors, r.connections_lost);
  if (r.connections_incomplete > 0) {
    absl::StrAppendFormat(&out, ", incomplete %d", r.connections_incomplete);
  }
  if (r.connections_stalled > 0) {
    absl::StrAppendFormat(&out, ", stalled %d", r.connections_stalled);
  }
  if (r.connections_timed_out > 0) {
    absl::StrAppendFormat(&out, ", timed out %d", r.connections_timed_out);
  }
  if (r.connections_down > 0) {
    absl::StrAppendFormat(&out, ", down %d", r.connections_down);
  }
  if (r.no_messages) out += ", no messages completed";
  return out;
}

std::string FormatReportText(const LoadReport& r) {
  std::string out;
  if (r.script_messages > 0) {
    absl::StrAppendFormat(&out,
                          "%-14s%s (%d thread%s, %d message%s of %d bytes in all per "
                          "connection, pipeline %d)\n",
                          "target", r.target, r.threads, r.threads == 1 ? "" : "s",
                          r.script_messages, r.script_messages == 1 ? "" : "s", r.script_bytes,
                          r.pipeline);
  } else {
    absl::StrAppendFormat(&out, "%-14s%s (%d thread%s, %d-byte messages, pipeline %d", "target",
                          r.target, r.threads, r.threads == 1 ? "" : "s", r.message_size,
                          r.pipeline);
    if (r.framing != LoadFraming::kRaw) {
      absl::StrAppend(&out, ", ", LoadFramingName(r.framing), " framing");
    }
    out += ")\n";
  }
  if (r.rate > 0) {
    absl::StrAppendFormat(&out,
                          "%-14s%.1f msg/s scheduled (open loop; latency from the intended send "
                          "time)\n",
                          "rate", r.rate);
  }
  if (r.churn) {
    // Each slot connects once per cycle.
    absl::StrAppendFormat(&out, "%-14s%d at a time (churn), %d opened, %d failed; closed by %s",
                          "connections", r.connections_requested, r.churn_connects,
                          r.churn_connect_failures,
                          r.churn_close == LoadOptions::ChurnClose::kReset ? "reset" : "FIN");
  } else {
    absl::StrAppendFormat(&out, "%-14s%d requested, %d established, %d failed", "connections",
                          r.connections_requested, r.connections_established, r.connections_failed);
  }
  if (r.source_addresses > 1) {
    absl::StrAppendFormat(&out, " (from 127.0.0.1..127.0.0.%d)", r.source_addresses);
  }
  out.push_back('\n');
  if (r.reconnect) {
    // Not errors (those are counted below): what the server's closes cost.
    absl::StrAppendFormat(&out,
                          "%-14s%d, %d attempt%s failed; %d sent bytes unanswered, %d message%s "
                          "abandoned\n",
                          "reconnects", r.reconnections, r.reconnect_failures,
                          r.reconnect_failures == 1 ? "" : "s", r.unanswered_bytes,
                          r.abandoned_messages, r.abandoned_messages == 1 ? "" : "s");
  }
  if (r.script_messages > 0) {
    absl::StrAppendFormat(&out, "%-14s%.3f s (until the last echo)\n", "measured",
                          absl::ToDoubleSeconds(r.measured));
  } else {
    absl::StrAppendFormat(&out, "%-14s%.2f s (after %.2f s warmup)\n", "measured",
                          absl::ToDoubleSeconds(r.measured), absl::ToDoubleSeconds(r.warmup));
  }
  if (r.churn) {
    absl::StrAppendFormat(&out, "%-14s%d (%.1f conn/s: connect, echo, close)\n", "cycles",
                          r.messages, r.MessagesPerSecond());
  } else {
    absl::StrAppendFormat(&out, "%-14s%d (%.1f msg/s)\n", "messages", r.messages,
                          r.MessagesPerSecond());
  }
  absl::StrAppendFormat(&out, "%-14s%.2f MiB/s of echoed payload (one direction, not doubled)\n",
                        "throughput", r.MebibytesPerSecond());
  const LatencyHistogram& h = r.latency_ns;
  if (h.count() == 0) {
    absl::StrAppendFormat(&out, "%-14s%s\n", "latency (us)", "n/a (no message completed)");
  } else {
    absl::StrAppendFormat(&out,
                          "%-14sp50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n",
                          "latency (us)", Micros(h.ValueAtPercentile(50)),
                          Micros(h.ValueAtPercentile(90)), Micros(h.ValueAtPercentile(99)),
                          Micros(h.ValueAtPercentile(99.9)), Micros(h.max()), h.mean() / 1000.0);
  }
  if (r.rate > 0 && r.latency_actual_ns.count() > 0) {
    // The line above counts from each message's intended send time; this
    // one from when the kernel took its first byte (LoadTally).
    const LatencyHistogram& a = r.latency_actual_ns;
    absl::StrAppendFormat(
        &out,
        "%-14sp50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f  (from the send)\n",
        "actual (us)", Micros(a.ValueAtPercentile(50)), Micros(a.ValueAtPercentile(90)),
        Micros(a.ValueAtPercentile(99)), Micros(a.ValueAtPercentile(99.9)), Micros(a.max()),
        a.mean() / 1000.0);
  }
  AppendClientLine(out, r);
  if (r.ok()) {
    absl::StrAppendFormat(&out, "%-14s%s\n", "errors", "none");
  } else {
    absl::StrAppendFormat(&out, "%-14s%d (%s)\n", "errors", r.error_count(), FormatErrorKinds(r));
    for (const std::string& e : r.first_errors) {
      absl::StrAppend(&out, "  ", e, "\n");
    }
  }
  return out;
}

namespace {

// One report field: the JSON path of its name and its value, already
// formatted as JSON (strings quoted).
using Field = ReportField;

// The report's fields in output order, shared by JSON and CSV so that the two
// cannot drift apart. New fields go at the end of their object.
std::vector<Field> ReportFields(const LoadReport& r) {
  std::vector<Field> f;
  auto add_number = [&](std::vector<absl::string_view> path, std::string text) {
    f.push_back({std::move(path), text, text});
  };
  auto add_string = [&](std::vector<absl::string_view> path, absl::string_view text) {
    Field field{std::move(path), "", ""};
    AppendJsonString(field.json, text);
    AppendCsvField(field.csv, text);
    f.push_back(std::move(field));
  };
  auto fixed = [](double v, int digits) { return absl::StrFormat("%.*f", digits, v); };
  const LatencyHistogram& h = r.latency_ns;
  add_string({"target"}, r.target);
  add_number({"threads"}, absl::StrCat(r.threads));
  add_number({"message_size"}, absl::StrCat(r.message_size));
  add_number({"pipeline"}, absl::StrCat(r.pipeline));
  add_number({"connections", "requested"}, absl::StrCat(r.connections_requested));
  add_number({"connections", "established"}, absl::StrCat(r.connections_established));
  add_number({"connections", "failed"}, absl::StrCat(r.connections_failed));
  add_number({"connections", "source_addresses"}, absl::StrCat(r.source_addresses));
  add_number({"warmup_s"}, fixed(absl::ToDoubleSeconds(r.warmup), 3));
  add_number({"measured_s"}, fixed(absl::ToDoubleSeconds(r.measured), 3));
  add_number({"messages"}, absl::StrCat(r.messages));
  add_number({"messages_per_s"}, fixed(r.MessagesPerSecond(), 1));
  add_number({"bytes"}, absl::StrCat(r.bytes));
  add_number({"mib_per_s"}, fixed(r.MebibytesPerSecond(), 3));
  add_number({"latency_us", "p50"}, fixed(Micros(h.ValueAtPercentile(50)), 1));
  add_number({"latency_us", "p90"}, fixed(Micros(h.ValueAtPercentile(90)), 1));
  add_number({"latency_us", "p99"}, fixed(Micros(h.ValueAtPercentile(99)), 1));
  add_number({"latency_us", "p99_9"}, fixed(Micros(h.ValueAtPercentile(99.9)), 1));
  add_number({"latency_us", "max"}, fixed(Micros(h.max()), 1));
  add_number({"latency_us", "mean"}, fixed(h.mean() / 1000.0, 1));
  add_number({"latency_us", "min"}, fixed(Micros(h.min()), 1));
  add_number({"latency_us", "p75"}, fixed(Micros(h.ValueAtPercentile(75)), 1));
  add_number({"latency_us", "p95"}, fixed(Micros(h.ValueAtPercentile(95)), 1));
  add_number({"latency_us", "p99_99"}, fixed(Micros(h.ValueAtPercentile(99.99)), 1));
  add_number({"latency_us", "count"}, absl::StrCat(h.count()));
  add_number({"errors", "total"}, absl::StrCat(r.error_count()));
  add_number({"errors", "connect"}, absl::StrCat(ConnectErrors(r)));
  add_number({"errors", "verification"}, absl::StrCat(r.verification_errors));
  add_number({"errors", "lost"}, absl::StrCat(r.connections_lost));
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
  add_number({"errors", "timed_out"}, absl::StrCat(r.connections_timed_out));
  add_number({"errors", "incomplete"}, absl::StrCat(r.connections_incomplete));
  add_number({"errors", "stalled"}, absl::StrCat(r.connections_stalled));
  // A count like its neighbours (0 or 1), so that errors.total is their sum.
  add_number({"errors", "no_messages"}, r.no_messages ? "1" : "0");
  add_number({"ok"}, r.ok() ? "true" : "false");
  add_string({"mode"}, ModeName(r));
  add_number({"rate"}, fixed(r.rate, 1));
  add_number({"script_messages"}, absl::StrCat(r.script_messages));
  add_number({"script_bytes"}, absl::StrCat(r.script_bytes));
  // LoadOptions::reconnect, at the very end so that every earlier CSV column
  // keeps its position, and top-level rather than an object, so that the
  // CSV names stay unambiguous. `down` is an error kind all the same: it
  // counts in errors.total and fails `ok`.
  add_number({"reconnect"}, r.reconnect ? "true" : "false");
  add_number({"reconnections"}, absl::StrCat(r.reconnections));
  add_number({"reconnect_failures"}, absl::StrCat(r.reconnect_failures));
  add_number({"unanswered_bytes"}, absl::StrCat(r.unanswered_bytes));
  add_number({"abandoned_messages"}, absl::StrCat(r.abandoned_messages));
  add_number({"down"}, absl::StrCat(r.connections_down));
  // LoadOptions::framing and ::churn, after them for the same reason. In
  // churn mode `messages` counts cycles, and churn_connections_per_s is
  // messages_per_s; churn_connect_failures are errors.connect.
  add_string({"framing"}, LoadFramingName(r.framing));
  add_number({"churn"}, r.churn ? "true" : "false");
  add_string({"churn_close"}, r.churn_close == LoadOptions::ChurnClose::kReset ? "reset" : "fin");
  add_number({"churn_connects"}, absl::StrCat(r.churn_connects));
  add_number({"churn_connections_per_s"}, fixed(r.churn ? r.MessagesPerSecond() : 0.0, 1));
  // Open loop: latency from each message's actual send (the kernel took its
  // first byte), beside latency_us from its intended send; the closed loop
  // sends when it issues, so there the two are the same figures.
  const LatencyHistogram& a = r.actual_latency();
  add_number({"latency_actual_us", "p50"}, fixed(Micros(a.ValueAtPercentile(50)), 1));
  add_number({"latency_actual_us", "p90"}, fixed(Micros(a.ValueAtPercentile(90)), 1));
  add_number({"latency_actual_us", "p99"}, fixed(Micros(a.ValueAtPercentile(99)), 1));
  add_number({"latency_actual_us", "p99_9"}, fixed(Micros(a.ValueAtPercentile(99.9)), 1));
  add_number({"latency_actual_us", "max"}, fixed(Micros(a.max()), 1));
  add_number({"latency_actual_us", "mean"}, fixed(a.mean() / 1000.0, 1));
  add_number({"latency_actual_us", "min"}, fixed(Micros(a.min()), 1));
  add_number({"latency_actual_us", "p75"}, fixed(Micros(a.ValueAtPercentile(75)), 1));
  add_number({"latency_actual_us", "p95"}, fixed(Micros(a.ValueAtPercentile(95)), 1));
  add_number({"latency_actual_us", "p99_99"}, fixed(Micros(a.ValueAtPercentile(99.99)), 1));
  add_number({"latency_actual_us", "count"}, absl::StrCat(a.count()));
  // The client's own load (load/client_cpu.h). thread_cpu is an array in
  // JSON, its values joined by ' ' in CSV.
  const ClientLoad& c = r.client;
  add_number({"client", "threads"}, absl::StrCat(c.thread_busy.size()));
  add_number({"client", "busiest_thread"}, absl::StrCat(c.busiest_thread));
  add_number({"client", "busiest_thread_cpu"}, fixed(c.busiest_busy, 3));
  {
    Field cpu{{"client", "thread_cpu"}, "[", ""};
    for (size_t i = 0; i < c.thread_busy.size(); ++i) {
      if (i > 0) {
        cpu.json.push_back(',');
        cpu.csv.push_back(' ');
      }
      cpu.json += fixed(c.thread_busy[i], 3);
      cpu.csv += fixed(c.thread_busy[i], 3);
    }
    cpu.json.push_back(']');
    f.push_back(std::move(cpu));
  }
  add_number({"client", "saturated"}, c.saturated ? "true" : "false");
  add_number({"client", "cpu_saturated"}, c.cpu_saturated ? "true" : "false");
  add_number({"client", "lag_saturated"}, c.lag_saturated ? "true" : "false");
  // Open loop: how late the client issued each measured message; all 0 in
  // the closed loop, which has no schedule.
  const LatencyHistogram& lag = c.send_lag_ns;
  add_number({"send_lag_us", "p50"}, fixed(Micros(lag.ValueAtPercentile(50)), 1));
  add_number({"send_lag_us", "p90"}, fixed(Micros(lag.ValueAtPercentile(90)), 1));
  add_number({"send_lag_us", "p99"}, fixed(Micros(lag.ValueAtPercentile(99)), 1));
  add_number({"send_lag_us", "max"}, fixed(Micros(lag.max()), 1));
  add_number({"send_lag_us", "share_over_1ms"}, fixed(ShareAbove(lag, kSaturatedLagNs), 4));
  add_number({"send_lag_us", "count"}, absl::StrCat(lag.count()));
  return f;
}

}  // namespace

std::string FormatReportJson(const LoadReport& r) { return FieldsToJson(ReportFields(r)); }

std::string FormatReportCsv(const LoadReport& r) { return FieldsToCsv(ReportFields(r)); }

std::string FormatProgressLine(const LoadProgress& p) {
  using Phase = LoadProgress::Phase;
  std::string out;
  switch (p.phase) {
    case Phase::kConnecting:
      return absl::StrFormat("connecting %.1fs: %d/%d established  errors %d",
                             absl::ToDoubleSeconds(p.elapsed), p.connections_established,
                             p.connections_requested, p.errors);
    case Phase::kWarmup:
      absl::StrAppendFormat(&out, "warmup %.1fs/%s", absl::ToDoubleSeconds(p.elapsed),
                            absl::FormatDuration(p.total));
      break;
    case Phase::kMeasuring:
      absl::StrAppendFormat(&out, "%.1fs/%s", absl::ToDoubleSeconds(p.elapsed),
                            absl::FormatDuration(p.total));
      break;
    case Phase::kScript:
      absl::StrAppendFormat(&out, "%.1fs  %d/%d messages echoed", absl::ToDoubleSeconds(p.elapsed),
                            p.messages_completed, p.messages_planned);
      break;
    case Phase::kDraining:
      out = "draining";
      break;
  }
  absl::StrAppendFormat(&out, "  %.0f %s", p.IntervalMessagesPerSecond(),
                        p.churn ? "conn/s" : "msg/s");
  if (p.interval_p99_ns > 0) {
    absl::StrAppendFormat(&out, "  p99 %.1fus", Micros(p.interval_p99_ns));
  } else {
    out += "  p99 -";
  }
  absl::StrAppendFormat(&out, "  errors %d", p.errors);
  // Churn's connections come and go: their rate is the line's.
  if (!p.churn) absl::StrAppendFormat(&out, "  conns %d", p.connections_established);
  if (p.reconnect) {
    absl::StrAppendFormat(&out, "  reconnects %d  reconnecting %d", p.reconnections,
                          p.reconnecting);
  }
  return out;
}

}  // namespace troupe
