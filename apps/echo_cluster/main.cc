// echo-cluster: troupe's multi-reactor server with a built-in actor.
// Flag parsing and wiring only; everything else lives in core/ and actors/.
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "actors/builtin.h"
#include "apps/cli.h"
#include "core/server.h"
#include "core/signals.h"
#include "core/string_view_compat.h"

ABSL_FLAG(std::string, host, "127.0.0.1",
          "Address to listen on (IPv4, IPv6 or a name). Use 0.0.0.0 or :: to "
          "accept from other machines.");
ABSL_FLAG(int, port, 7007, "TCP port; 0 picks a free one (printed at start).");
ABSL_FLAG(int, workers, 0, "Reactor threads; 0 means one per online CPU.");
ABSL_FLAG(std::string, mode, "echo",
          "Built-in actor: echo, upper, ack, chat or work (see README).");
ABSL_FLAG(std::string, codec, "",
          "Message framing: raw, lines or length (u32 big-endian prefix). "
          "Empty: raw for echo/upper, lines for ack/chat/work.");
ABSL_FLAG(int64_t, max_line, 64 * 1024,
          "lines codec: the longest line accepted; a longer one closes that "
          "connection.");
ABSL_FLAG(int64_t, max_frame, 16 << 20,
          "length codec: the largest frame accepted; a larger one closes that "
          "connection.");
ABSL_FLAG(int64_t, work_us, 1000,
          "work mode: microseconds of CPU work per line, done on the offload "
          "pool.");
ABSL_FLAG(int, offload_threads, 0,
          "work mode: offload pool threads; 0 means one per online CPU.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(10),
          "On SIGINT/SIGTERM, how long connections may take to flush before "
          "they are closed.");

namespace {

constexpr char kUsage[] =
    "troupe's multi-reactor echo server.\n\n"
    "Usage: echo-cluster [--host=127.0.0.1] [--port=7007] [--workers=N] "
    "[--mode=echo|upper|ack|chat|work]\n\n"
    "Example: echo-cluster --workers 8 --port 7007\n"
    "Stops cleanly on SIGINT or SIGTERM.";

}  // namespace

int main(int argc, char* argv[]) {
  std::vector<char*> rest = troupe::cli::ParseFlagsOrExit(argc, argv, kUsage);
  if (rest.size() > 1) {
    troupe::cli::UsageError(argv[0], absl::StrCat("unexpected argument '", rest[1], "'"));
  }
  const int port = absl::GetFlag(FLAGS_port);
  if (port < 0 || port > 65535) {
    troupe::cli::UsageError(argv[0], absl::StrCat("--port must be 0..65535, got ", port));
  }
  const int workers = absl::GetFlag(FLAGS_workers);
  if (workers < 0 || workers > 1024) {
    troupe::cli::UsageError(argv[0], absl::StrCat("--workers must be 0..1024, got ", workers));
  }
  if (absl::GetFlag(FLAGS_max_line) < 1 || absl::GetFlag(FLAGS_max_frame) < 1) {
    troupe::cli::UsageError(argv[0], "--max_line and --max_frame must be at least 1");
  }
  if (absl::GetFlag(FLAGS_offload_threads) < 0) {
    troupe::cli::UsageError(argv[0], "--offload_threads must not be negative");
  }
  troupe::OffloadPool offload(absl::GetFlag(FLAGS_mode) == "work"
                                  ? absl::GetFlag(FLAGS_offload_threads)
                                  : 1);
  troupe::BuiltinOptions builtin;
  builtin.mode = absl::GetFlag(FLAGS_mode);
  builtin.codec = absl::GetFlag(FLAGS_codec);
  builtin.max_line = static_cast<size_t>(absl::GetFlag(FLAGS_max_line));
  builtin.max_frame = static_cast<size_t>(absl::GetFlag(FLAGS_max_frame));
  builtin.work_us = absl::GetFlag(FLAGS_work_us);
  builtin.offload = &offload;
  absl::StatusOr<troupe::HandlerFactory> factory = troupe::MakeBuiltinFactory(builtin);
  if (!factory.ok()) {
    troupe::cli::UsageError(argv[0], troupe::AsStd(factory.status().message()));
  }
  if (absl::GetFlag(FLAGS_drain_timeout) < absl::ZeroDuration()) {
    troupe::cli::UsageError(argv[0], "--drain_timeout must not be negative");
  }
  absl::StatusOr<troupe::Address> address =
      troupe::Address::FromHostPort(absl::GetFlag(FLAGS_host), static_cast<uint16_t>(port));
  if (!address.ok()) {
    std::fprintf(stderr, "echo-cluster: %s\n", std::string(address.status().message()).c_str());
    return 1;
  }

  // Block the stop signals in every thread; main waits for them below.
  troupe::BlockStopSignals();

  troupe::ServerOptions options;
  options.address = *address;
  options.workers = workers;
  options.drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  absl::StatusOr<std::unique_ptr<troupe::Server>> server =
      troupe::Server::Create(options, std::move(*factory));
  if (!server.ok()) {
    std::fprintf(stderr, "echo-cluster: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  (*server)->Start();
  std::printf("echo-cluster listening on %s with %d workers\n",
              (*server)->address().ToString().c_str(), (*server)->workers());
  std::fflush(stdout);

  const int signal_number = troupe::WaitForStopSignal();
  std::fprintf(stderr, "echo-cluster: %s, draining\n",
               signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  (*server)->Stop();
  const troupe::ReactorStats total = (*server)->Stats().Total();
  std::fprintf(stderr,
               "echo-cluster: stopped; %llu connections served, %llu bytes in, "
               "%llu bytes out\n",
               static_cast<unsigned long long>(total.accepted),
               static_cast<unsigned long long>(total.bytes_in),
               static_cast<unsigned long long>(total.bytes_out));
  return 0;
}
