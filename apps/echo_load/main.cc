// echo-load: drives an echo server with many connections and verifies every
// echoed byte. Flag parsing and wiring only: the engine is load/load_client.h,
// the reports it prints load/report.h and load/hdr_output.h.
// Every flag is documented, with examples, in docs/echo-load.md.
//
// Output: the report on stdout (text, --json or --csv); progress on stderr,
// redrawn in place on a terminal, plain lines otherwise.
//
// Exit status: 0 when the run was clean, 1 on a run-time failure (nothing
// could connect, --histogram-out not writable) or when the report holds any
// error, 2 on a usage error.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "apps/cli.h"
#include "core/base/fd.h"
#include "core/net/address.h"
#include "load/chat.h"
#include "load/chat_report.h"
#include "load/client_cpu.h"
#include "load/find_rate.h"
#include "load/framing.h"
#include "load/hdr_output.h"
#include "load/load_client.h"
#include "load/report.h"

ABSL_FLAG(std::string, host, "127.0.0.1",
          "echo server host: IPv4, IPv6 or a name resolved once at start");
ABSL_FLAG(int32_t, port, 7007, "echo server port");
ABSL_FLAG(int32_t, connections, 100, "connections to open");
ABSL_FLAG(int32_t, threads, 0,
          "client threads, each with its own epoll loop; 0 means "
          "min(connections, online CPUs)");
ABSL_FLAG(int64_t, size, 64, "message size in bytes; with --framing, the whole frame");
ABSL_FLAG(int32_t, pipeline, 1, "messages kept in flight per connection");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10), "measured time, e.g. 10s or 1m");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(1), "unmeasured traffic before the measured time");
ABSL_FLAG(bool, json, false, "print the report as one JSON object");
ABSL_FLAG(bool, csv, false,
          "print the report as CSV: a header line and a value line, the JSON "
          "fields with nested names joined by '_'");
ABSL_FLAG(std::string, histogram_out, "",
          "also write the latency percentile distribution to this file, in "
          "HdrHistogram's text format (microseconds)");
ABSL_FLAG(double, rate, 0,
          "open loop: messages per second in all, scheduled evenly over the "
          "connections; latency counts from each message's intended send "
          "time. 0: closed loop (a new message as soon as one is echoed)");
ABSL_FLAG(bool, find_rate, false,
          "knee search: the highest open-loop rate whose p99 latency (from the intended send "
          "time) stays within --p99 with no errors: a closed-loop probe of --step-duration, "
          "then bisection between 0 and its rate, each step a fresh open-loop run of --warmup "
          "and --step-duration, until the bracket is within 5% or after --max-steps. Exit 1 "
          "when no rate passes. Not with --rate or --messages");
ABSL_FLAG(absl::Duration, p99, absl::ZeroDuration(),
          "with --find-rate: the bound on each step's p99 latency, e.g. 2ms or 500us");
ABSL_FLAG(absl::Duration, step_duration, absl::Seconds(3),
          "with --find-rate: each step's measured time (the probe's too)");
ABSL_FLAG(int32_t, max_steps, 8, "with --find-rate: open-loop steps at most, after the probe");
ABSL_FLAG(bool, messages, false,
          "script mode: the arguments after the flags are messages; each "
          "connection sends them in order, checks each echo and closes "
          "(put -- before messages that start with '-')");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(30),
          "script mode: connections not done by then are errors");
ABSL_FLAG(absl::Duration, stall_timeout, absl::Seconds(2),
          "a connection that waits for echoes and receives nothing for this "
          "long is an error (stalled) and is closed; also how long the end "
          "of the run waits for echoes in flight (1s at least). 0 or inf: no "
          "stall check");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(10),
          "time allowed for all connections to be established; with --churn, for each "
          "cycle's connect");
ABSL_FLAG(int32_t, source_addresses, 0,
          "bind connections to 127.0.0.1..127.0.0.N round robin, for more "
          "connections than one address has ephemeral ports; 0: as many as "
          "needed (usually 1: no bind; with --churn on a loopback target, 8)");
ABSL_FLAG(bool, reconnect, false,
          "when the server closes a connection during the run, open it again "
          "(backoff 10ms doubling to 1s) and go on: a clean close (FIN) is no "
          "error, its unechoed bytes are counted as unanswered; a reset is "
          "still an error (lost), as is a connection still down at the end. "
          "For servers drained and restarted behind a load balancer. Not with "
          "--messages");
ABSL_FLAG(bool, tls, false,
          "speak TLS (1.2 or 1.3) to the server; needs --tls-ca or --tls-insecure. "
          "The handshake counts as part of the connect (--connect-timeout)");
ABSL_FLAG(std::string, tls_ca, "",
          "with --tls: verify the server's certificate against the CA "
          "certificates in this PEM file, and its name (--tls-server-name, else --host)");
ABSL_FLAG(std::string, tls_server_name, "",
          "with --tls: the name sent as SNI and checked against the certificate; "
          "empty: --host");
ABSL_FLAG(bool, tls_insecure, false,
          "with --tls: verify nothing (any certificate, any name); for tests only");
ABSL_FLAG(std::string, framing, "raw",
          "how each --size message is framed, to match the server's codec: raw (plain bytes, for "
          "any server that echoes bytes), lines (size-1 bytes holding no \"\\n\" or "
          "\"\\r\", then \"\\n\"; --size 2 at least) or length (a 4-byte big-endian length "
          "of size-4, then size-4 bytes; --size 5 at least). Framed messages are at most 16 MiB. "
          "Every byte of the echo is still checked. Not with --messages");
ABSL_FLAG(bool, churn, false,
          "connection churn: each of --connections slots connects, sends one --size message, "
          "checks its echo and closes, again and again through --warmup and --duration; reports "
          "connections per second, each cycle's latency (connect to verified echo) and its "
          "errors (refused, reset, wrong bytes, timeouts). Not with --messages, --rate, "
          "--reconnect, --tls or --pipeline above 1");
ABSL_FLAG(std::string, churn_close, "fin",
          "with --churn, how each cycle closes once its echo is verified: fin (shutdown, wait "
          "for the server's FIN, close; the client keeps the TIME_WAIT, and on a loopback target "
          "--source-addresses defaults to 8) or reset (SO_LINGER 0: the server gets a RST, and "
          "nobody a TIME_WAIT)");
ABSL_FLAG(absl::Duration, progress_interval, absl::Seconds(5),
          "when stderr is not a terminal, print a progress line this often; "
          "on a terminal one line is redrawn every 500ms. 0: no progress");
ABSL_FLAG(bool, chat, false,
          "chat room fan-out against a chat server (echo-cluster --mode chat): the "
          "--connections join one room, --talkers of them send --size-byte lines (with "
          "--pipeline lines each not yet with every member, or --rate lines/s in all), every "
          "member checks each line it gets (none lost, duplicated, reordered or corrupt) and "
          "times its delivery. Not with --messages, --reconnect, --tls, --framing or --churn; "
          "no progress line");
ABSL_FLAG(int32_t, talkers, 10, "with --chat: how many of the members talk (1..--connections)");

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
// Descriptors beyond the connections: stdio, epoll fds, the libc's own.
constexpr uint64_t kSpareFds = 64;
// How often a terminal's progress line is redrawn: fast enough to feel live,
// slow enough that the numbers can be read.
constexpr absl::Duration kTerminalRefresh = absl::Milliseconds(500);

// Whether a flag holds other than its default (this Abseil keeps whether it
// was given on the command line to itself).
template <typename T>
bool FlagChanged(const absl::Flag<T>& flag) {
  const absl::CommandLineFlag& handle = absl::GetFlagReflectionHandle(flag);
  return handle.CurrentValue() != handle.DefaultValue();
}

[[noreturn]] void Fail(int code, absl::string_view message) {
  std::cerr << "echo-load: " << message << std::endl;
  std::exit(code);
}

// Before either run: SIGPIPE ignored (belt and braces: every send already
// passes MSG_NOSIGNAL), the open-file limit raised for `connections`, and
// --histogram-out opened (so that a bad path fails in a second, not after
// the whole run).
std::ofstream PrepareRun(uint64_t connections) {
  ::signal(SIGPIPE, SIG_IGN);
  if (absl::Status s = troupe::RaiseOpenFileLimit(connections + kSpareFds); !s.ok()) {
    Fail(kExitFailure, s.message());
  }
  std::ofstream histogram_file;
  const std::string path = absl::GetFlag(FLAGS_histogram_out);
  if (!path.empty()) {
    histogram_file.open(path, std::ios::out | std::ios::trunc);
    if (!histogram_file.is_open()) {
      Fail(kExitFailure,
           absl::StrCat("--histogram-out: cannot open ", path, ": ", std::strerror(errno)));
    }
  }
  return histogram_file;
}

// After either run: the latency distribution into --histogram-out, if it
// was asked for (PrepareRun opened it).
void WriteHistogram(std::ofstream& histogram_file, const troupe::LoadReport& latency) {
  if (!histogram_file.is_open()) return;
  histogram_file << troupe::FormatPercentileDistribution(latency);
  histogram_file.close();
  if (!histogram_file) {
    Fail(kExitFailure,
         absl::StrCat("--histogram-out: cannot write ", absl::GetFlag(FLAGS_histogram_out)));
  }
}

// --chat: the chat room load (load/chat.h) with the flags it shares with
// the echo load. Returns the exit status.
int RunChatMode(const troupe::Address& target) {
  if (absl::GetFlag(FLAGS_messages)) Fail(kExitUsage, "--chat and --messages exclude each other");
  if (absl::GetFlag(FLAGS_reconnect)) Fail(kExitUsage, "--reconnect does not apply to --chat");
  if (absl::GetFlag(FLAGS_tls)) Fail(kExitUsage, "--tls does not apply to --chat");
  if (absl::GetFlag(FLAGS_churn)) Fail(kExitUsage, "--chat and --churn exclude each other");
  if (absl::GetFlag(FLAGS_framing) != "raw") {
    Fail(kExitUsage, "--framing does not apply to --chat (a chat room speaks lines)");
  }
  troupe::ChatOptions options;
  options.target = target;
  options.members = absl::GetFlag(FLAGS_connections);
  options.talkers = absl::GetFlag(FLAGS_talkers);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.line_size = static_cast<size_t>(absl::GetFlag(FLAGS_size));
  options.pipeline = absl::GetFlag(FLAGS_pipeline);
  options.rate = absl::GetFlag(FLAGS_rate);
  options.duration = absl::GetFlag(FLAGS_duration);
  options.warmup = absl::GetFlag(FLAGS_warmup);
  options.connect_timeout = absl::GetFlag(FLAGS_connect_timeout);
  options.stall_timeout = absl::GetFlag(FLAGS_stall_timeout);
  options.source_addresses = absl::GetFlag(FLAGS_source_addresses);
  if (absl::Status s = troupe::ValidateChatOptions(options); !s.ok()) {
    Fail(kExitUsage, s.message());
  }
  std::ofstream histogram_file = PrepareRun(static_cast<uint64_t>(options.members));
  absl::StatusOr<troupe::ChatReport> report = troupe::RunChat(options);
  if (!report.ok()) Fail(kExitFailure, report.status().message());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << troupe::FormatChatReportJson(*report);
  } else if (absl::GetFlag(FLAGS_csv)) {
    std::cout << troupe::FormatChatReportCsv(*report);
  } else {
    std::cout << troupe::FormatChatReportText(*report);
  }
  std::cout << std::flush;
  WriteHistogram(histogram_file, troupe::ChatLatencyAsLoadReport(*report));
  if (!report->ok()) {
    Fail(kExitFailure, absl::StrCat("run failed: ", report->error_count(), " errors (",
                                    troupe::FormatChatErrorKinds(*report), ")"));
  }
  return 0;
}

// --find-rate: the knee search (load/find_rate.h) over runs set up as
// `load`. Each step's line goes to stderr as it ends (unless
// --progress-interval 0); the report to stdout. Returns the exit status.
int RunFindRateMode(troupe::LoadOptions load) {
  if (!absl::GetFlag(FLAGS_histogram_out).empty()) {
    Fail(kExitUsage, "--histogram-out does not apply to --find-rate (one distribution per step)");
  }
  troupe::FindRateOptions options;
  options.load = std::move(load);
  options.p99_bound = absl::GetFlag(FLAGS_p99);
  options.step_duration = absl::GetFlag(FLAGS_step_duration);
  options.max_steps = absl::GetFlag(FLAGS_max_steps);
  if (absl::Status s = troupe::ValidateFindRateOptions(options); !s.ok()) {
    Fail(kExitUsage, s.message());
  }
  if (absl::GetFlag(FLAGS_progress_interval) > absl::ZeroDuration()) {
    // The step count lives in the callback, which outlives this block.
    options.on_step = [index = 0,
                       max_steps = options.max_steps](const troupe::FindRateStep& step) mutable {
      std::cerr << "echo-load: find-rate " << troupe::FormatFindRateStep(step, index++, max_steps)
                << std::endl;
    };
  }
  PrepareRun(static_cast<uint64_t>(options.load.connections));  // no --histogram-out here
  absl::StatusOr<troupe::FindRateResult> result = troupe::FindRate(options);
  if (!result.ok()) Fail(kExitFailure, result.status().message());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << troupe::FormatFindRateJson(*result, options);
  } else if (absl::GetFlag(FLAGS_csv)) {
    std::cout << troupe::FormatFindRateCsv(*result);
  } else {
    std::cout << troupe::FormatFindRateText(*result, options);
  }
  std::cout << std::flush;
  if (result->probe_failed) {
    const troupe::FindRateStep& probe = result->steps.front();
    Fail(kExitFailure, absl::StrCat("find-rate: the closed-loop probe had ", probe.errors,
                                    " errors; first: ", probe.first_error));
  }
  if (!result->found) {
    Fail(kExitFailure,
         absl::StrCat("find-rate: no rate kept p99 within ",
                      absl::FormatDuration(options.p99_bound), " with no errors; even ",
                      absl::StrFormat("%.1f", result->steps.back().rate_asked),
                      " msg/s, the lowest tried, missed"));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<char*> positional = troupe::cli::ParseFlagsOrExit(
      argc, argv,
      "Drives an echo server with many TCP connections and verifies every "
      "echoed byte.\n"
      "Example:\n"
      "  echo-load --host 127.0.0.1 --port 7007 --connections 1000 "
      "--pipeline 4 --duration 30s\n"
      "  echo-load --connections 100 --rate 20000 --json > run.json\n"
      "  echo-load --connections 3 --messages 'Message 1' 'Message 2'\n"
      "  echo-load --framing lines --size 64   # against echo-cluster --codec lines\n"
      "  echo-load --churn --connections 50 --duration 10s\n"
      "  echo-load --chat --connections 200 --talkers 10 --port 7007   # echo-cluster --mode chat\n"
      "Documentation: docs/echo-load.md.\n"
      "Exit status: 0 clean run; 1 run-time failure or errors in the report; "
      "2 usage error.");
  const bool script_mode = absl::GetFlag(FLAGS_messages);
  if (positional.size() > 1 && !script_mode) {
    Fail(kExitUsage, absl::StrCat("unexpected argument '", positional[1],
                                  "' (see --help; messages need --messages)"));
  }
  if (script_mode && positional.size() < 2) {
    Fail(kExitUsage, "--messages needs at least one message after the flags");
  }
  if (absl::GetFlag(FLAGS_json) && absl::GetFlag(FLAGS_csv)) {
    Fail(kExitUsage, "--json and --csv are mutually exclusive");
  }
  if (absl::GetFlag(FLAGS_find_rate)) {
    // A bound of 0 (the default) is no bound: ValidateFindRateOptions says
    // so for a negative one.
    if (absl::GetFlag(FLAGS_p99) == absl::ZeroDuration()) {
      Fail(kExitUsage, "--find-rate needs a positive --p99 bound, e.g. --p99 2ms or --p99=500us");
    }
    if (absl::GetFlag(FLAGS_chat)) Fail(kExitUsage, "--find-rate does not apply to --chat");
  } else if (FlagChanged(FLAGS_p99) || FlagChanged(FLAGS_step_duration) ||
             FlagChanged(FLAGS_max_steps)) {
    Fail(kExitUsage, "--p99, --step-duration and --max-steps need --find-rate");
  }
  if (script_mode && absl::GetFlag(FLAGS_reconnect)) {
    Fail(kExitUsage, "--reconnect does not apply to --messages: a script is sent once");
  }

  const bool tls = absl::GetFlag(FLAGS_tls);
  const bool tls_verify = !absl::GetFlag(FLAGS_tls_ca).empty();
  if (tls && !tls_verify && !absl::GetFlag(FLAGS_tls_insecure)) {
    Fail(kExitUsage, "--tls needs --tls-ca FILE (verify the server) or --tls-insecure (do not)");
  }
  if (tls_verify && absl::GetFlag(FLAGS_tls_insecure)) {
    Fail(kExitUsage, "--tls-ca and --tls-insecure exclude each other");
  }
  if (!tls && (tls_verify || absl::GetFlag(FLAGS_tls_insecure) ||
               !absl::GetFlag(FLAGS_tls_server_name).empty())) {
    Fail(kExitUsage, "--tls-ca, --tls-insecure and --tls-server-name need --tls");
  }

  const int32_t port = absl::GetFlag(FLAGS_port);
  if (port < 1 || port > 65535) {
    Fail(kExitUsage, absl::StrCat("--port must be 1..65535, got ", port));
  }
  const int64_t size = absl::GetFlag(FLAGS_size);
  if (size < 1) {
    Fail(kExitUsage, absl::StrCat("--size must be at least 1, got ", size));
  }
  absl::StatusOr<troupe::Address> target =
      troupe::Address::FromHostPort(absl::GetFlag(FLAGS_host), static_cast<uint16_t>(port));
  if (!target.ok()) Fail(kExitUsage, absl::StrCat("--host: ", target.status().message()));
  if (absl::GetFlag(FLAGS_chat)) return RunChatMode(*target);

  troupe::LoadOptions options;
  options.target = *target;
  options.connections = absl::GetFlag(FLAGS_connections);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.message_size = static_cast<size_t>(size);
  options.pipeline = absl::GetFlag(FLAGS_pipeline);
  options.duration = absl::GetFlag(FLAGS_duration);
  options.warmup = absl::GetFlag(FLAGS_warmup);
  options.connect_timeout = absl::GetFlag(FLAGS_connect_timeout);
  options.rate = absl::GetFlag(FLAGS_rate);
  options.script_timeout = absl::GetFlag(FLAGS_timeout);
  options.source_addresses = absl::GetFlag(FLAGS_source_addresses);
  options.stall_timeout = absl::GetFlag(FLAGS_stall_timeout);
  options.reconnect = absl::GetFlag(FLAGS_reconnect);
  options.tls = tls;
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  options.tls_insecure = absl::GetFlag(FLAGS_tls_insecure);
  absl::StatusOr<troupe::LoadFraming> framing =
      troupe::ParseLoadFraming(absl::GetFlag(FLAGS_framing));
  if (!framing.ok()) Fail(kExitUsage, absl::StrCat("--framing: ", framing.status().message()));
  options.framing = *framing;
  options.churn = absl::GetFlag(FLAGS_churn);
  const std::string churn_close = absl::GetFlag(FLAGS_churn_close);
  if (churn_close == "reset") {
    options.churn_close = troupe::LoadOptions::ChurnClose::kReset;
  } else if (churn_close != "fin") {
    Fail(kExitUsage, absl::StrCat("--churn-close must be fin or reset, got '", churn_close, "'"));
  }
  if (options.stall_timeout < absl::ZeroDuration()) {
    Fail(kExitUsage, "--stall-timeout must not be negative");
  }
  if (script_mode) {
    options.messages.assign(positional.begin() + 1, positional.end());
  }
  if (absl::GetFlag(FLAGS_find_rate)) return RunFindRateMode(std::move(options));
  const absl::Duration progress_interval = absl::GetFlag(FLAGS_progress_interval);
  if (progress_interval < absl::ZeroDuration()) {
    Fail(kExitUsage, "--progress-interval must not be negative");
  }
  // Progress goes to stderr, so that stdout holds only the report.
  const bool terminal = ::isatty(STDERR_FILENO) == 1;
  bool progress_shown = false;
  if (progress_interval > absl::ZeroDuration()) {
    options.progress_interval = terminal ? kTerminalRefresh : progress_interval;
    options.on_progress = [&](const troupe::LoadProgress& p) {
      const std::string line = troupe::FormatProgressLine(p);
      if (terminal) {
        // Back to column 0, the line, then erase whatever a longer previous
        // line left (ECMA-48 EL).
        std::fprintf(stderr, "\r%s\033[K", line.c_str());
      } else {
        std::fprintf(stderr, "echo-load: progress %s\n", line.c_str());
      }
      std::fflush(stderr);
      progress_shown = true;
    };
  }
  if (absl::Status s = troupe::ValidateLoadOptions(options); !s.ok()) {
    Fail(kExitUsage, s.message());
  }

  std::ofstream histogram_file = PrepareRun(static_cast<uint64_t>(options.connections));

  absl::StatusOr<troupe::LoadReport> report = troupe::RunLoad(options);
  // Wipes the progress line, so the report starts in column 0.
  if (terminal && progress_shown) std::fprintf(stderr, "\r\033[K");
  if (!report.ok()) Fail(kExitFailure, report.status().message());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << troupe::FormatReportJson(*report);
  } else if (absl::GetFlag(FLAGS_csv)) {
    std::cout << troupe::FormatReportCsv(*report);
  } else {
    std::cout << troupe::FormatReportText(*report);
  }
  std::cout << std::flush;
  // After the report, so that it is the last thing a terminal shows.
  std::cerr << troupe::FormatClientWarning(report->client);
  WriteHistogram(histogram_file, *report);
  if (!report->ok()) {
    Fail(kExitFailure, absl::StrCat("run failed: ", report->error_count(), " errors (",
                                    troupe::FormatErrorKinds(*report), ")"));
  }
  return 0;
}
