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
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "apps/cli.h"
#include "core/base/fd.h"
#include "core/net/address.h"
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
ABSL_FLAG(int64_t, size, 64, "message size in bytes");
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
          "time allowed for all connections to be established");
ABSL_FLAG(int32_t, source_addresses, 0,
          "bind connections to 127.0.0.1..127.0.0.N round robin, for more "
          "connections than one address has ephemeral ports; 0: as many as "
          "needed (usually 1: no bind)");
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
ABSL_FLAG(absl::Duration, progress_interval, absl::Seconds(5),
          "when stderr is not a terminal, print a progress line this often; "
          "on a terminal one line is redrawn every 500ms. 0: no progress");

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
// Descriptors beyond the connections: stdio, epoll fds, the libc's own.
constexpr uint64_t kSpareFds = 64;
// How often a terminal's progress line is redrawn: fast enough to feel live,
// slow enough that the numbers can be read.
constexpr absl::Duration kTerminalRefresh = absl::Milliseconds(500);

[[noreturn]] void Fail(int code, absl::string_view message) {
  std::cerr << "echo-load: " << message << std::endl;
  std::exit(code);
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
  if (options.stall_timeout < absl::ZeroDuration()) {
    Fail(kExitUsage, "--stall-timeout must not be negative");
  }
  if (script_mode) {
    options.messages.assign(positional.begin() + 1, positional.end());
  }
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

  // Belt and braces: every send already passes MSG_NOSIGNAL.
  ::signal(SIGPIPE, SIG_IGN);
  if (absl::Status s =
          troupe::RaiseOpenFileLimit(static_cast<uint64_t>(options.connections) + kSpareFds);
      !s.ok()) {
    Fail(kExitFailure, s.message());
  }

  // Opened before the run, so that a bad path fails in a second, not after
  // the whole run.
  const std::string histogram_path = absl::GetFlag(FLAGS_histogram_out);
  std::ofstream histogram_file;
  if (!histogram_path.empty()) {
    histogram_file.open(histogram_path, std::ios::out | std::ios::trunc);
    if (!histogram_file.is_open()) {
      Fail(kExitFailure, absl::StrCat("--histogram-out: cannot open ", histogram_path, ": ",
                                      std::strerror(errno)));
    }
  }

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
  if (histogram_file.is_open()) {
    histogram_file << troupe::FormatPercentileDistribution(*report);
    histogram_file.close();
    if (!histogram_file) {
      Fail(kExitFailure, absl::StrCat("--histogram-out: cannot write ", histogram_path));
    }
  }
  if (!report->ok()) {
    Fail(kExitFailure, absl::StrCat("run failed: ", report->error_count(), " errors (",
                                    troupe::FormatErrorKinds(*report), ")"));
  }
  return 0;
}
