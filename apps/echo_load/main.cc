// echo-load: drives an echo server with many connections and verifies every
// echoed byte. Flag parsing and wiring only; the engine is load_client.h.
//
// Exit status: 0 when the run was clean, 1 on a run-time failure (nothing
// could connect) or when the report holds any error, 2 on a usage error.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
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
#include "apps/echo_load/load_client.h"
#include "core/address.h"

ABSL_FLAG(std::string, host, "127.0.0.1",
          "echo server host: IPv4, IPv6 or a name resolved once at start");
ABSL_FLAG(int32_t, port, 7007, "echo server port");
ABSL_FLAG(int32_t, connections, 100, "connections to open");
ABSL_FLAG(int32_t, threads, 0,
          "client threads, each with its own epoll loop; 0 means "
          "min(connections, online CPUs)");
ABSL_FLAG(int64_t, size, 64, "message size in bytes");
ABSL_FLAG(int32_t, pipeline, 1, "messages kept in flight per connection");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10),
          "measured time, e.g. 10s or 1m");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(1),
          "unmeasured traffic before the measured time");
ABSL_FLAG(bool, json, false, "print the report as one JSON object");

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
// Descriptors beyond the connections: stdio, epoll fds, the libc's own.
constexpr uint64_t kSpareFds = 64;

[[noreturn]] void Fail(int code, absl::string_view message) {
  std::cerr << "echo-load: " << message << std::endl;
  std::exit(code);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<char*> positional = troupe::cli::ParseFlagsOrExit(argc, argv,
      "Drives an echo server with many TCP connections and verifies every "
      "echoed byte.\n"
      "Example:\n"
      "  echo-load --host 127.0.0.1 --port 7007 --connections 1000 "
      "--pipeline 4 --duration 30s\n"
      "Exit status: 0 clean run; 1 run-time failure or errors in the report; "
      "2 usage error.");
  if (positional.size() > 1) {
    Fail(kExitUsage, absl::StrCat("unexpected argument '", positional[1],
                                  "' (see --help)"));
  }

  const int32_t port = absl::GetFlag(FLAGS_port);
  if (port < 1 || port > 65535) {
    Fail(kExitUsage, absl::StrCat("--port must be 1..65535, got ", port));
  }
  const int64_t size = absl::GetFlag(FLAGS_size);
  if (size < 1) {
    Fail(kExitUsage, absl::StrCat("--size must be at least 1, got ", size));
  }
  absl::StatusOr<troupe::Address> target = troupe::Address::FromHostPort(
      absl::GetFlag(FLAGS_host), static_cast<uint16_t>(port));
  if (!target.ok())
    Fail(kExitUsage, absl::StrCat("--host: ", target.status().message()));

  troupe::LoadOptions options;
  options.target = *target;
  options.connections = absl::GetFlag(FLAGS_connections);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.message_size = static_cast<size_t>(size);
  options.pipeline = absl::GetFlag(FLAGS_pipeline);
  options.duration = absl::GetFlag(FLAGS_duration);
  options.warmup = absl::GetFlag(FLAGS_warmup);
  if (absl::Status s = troupe::ValidateLoadOptions(options); !s.ok()) {
    Fail(kExitUsage, s.message());
  }

  // Belt and braces: every send already passes MSG_NOSIGNAL.
  ::signal(SIGPIPE, SIG_IGN);
  if (absl::Status s = troupe::RaiseOpenFileLimit(
          static_cast<uint64_t>(options.connections) + kSpareFds);
      !s.ok()) {
    Fail(kExitFailure, s.message());
  }

  absl::StatusOr<troupe::LoadReport> report = troupe::RunLoad(options);
  if (!report.ok()) Fail(kExitFailure, report.status().message());
  std::cout << (absl::GetFlag(FLAGS_json) ? troupe::FormatReportJson(*report)
                                          : troupe::FormatReportText(*report))
            << std::flush;
  if (!report->ok()) {
    Fail(kExitFailure,
         absl::StrCat("run failed: ", report->error_count(),
                      " errors (connect ", report->connections_failed,
                      ", verification ", report->verification_errors, ", lost ",
                      report->connections_lost, ")"));
  }
  return 0;
}
