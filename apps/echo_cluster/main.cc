// echo-cluster: troupe's multi-reactor server with a built-in actor.
// Flag parsing and wiring only; everything else lives in core/ and actors/.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actors/builtin.h"
#include "actors/redis_bus.h"
#include "apps/cli.h"
#include "core/base/log.h"
#include "core/base/string_view_compat.h"
#include "core/net/socket.h"
#include "core/net/tls.h"
#include "core/ops/handoff.h"
#include "core/ops/metrics_server.h"
#include "core/ops/signals.h"
#include "core/ops/systemd.h"
#include "core/server.h"

ABSL_FLAG(std::string, host, "127.0.0.1",
          "Address to listen on (IPv4, IPv6 or a name). The default accepts "
          "only local clients; use 0.0.0.0 or :: to accept from other machines.");
ABSL_FLAG(int, port, 7007, "TCP port; 0 picks a free one (printed at start).");
ABSL_FLAG(int, workers, 0, "Reactor threads; 0 means one per online CPU.");
ABSL_FLAG(std::string, mode, "echo",
          "Built-in actor: echo, upper, ack, chat or work (see README).");
ABSL_FLAG(std::string, codec, "",
          "Message framing: raw, lines or length (u32 big-endian prefix). "
          "Empty: raw for echo/upper, lines for ack/chat/work.");
ABSL_FLAG(int64_t, max_line, 64 * 1024,
          "lines codec: the longest line accepted; a longer one closes that "
          "connection (protocol_error).");
ABSL_FLAG(int64_t, max_frame, 16 << 20,
          "length codec: the largest frame accepted; a larger one closes that "
          "connection (protocol_error).");
ABSL_FLAG(int64_t, work_us, 1000,
          "work mode: microseconds of CPU work per line, done on the offload pool.");
ABSL_FLAG(int, offload_threads, 0, "work mode: offload pool threads; 0 means one per online CPU.");
ABSL_FLAG(int64_t, high_watermark, 1 << 20,
          "Bytes of unsent output per connection above which the server stops "
          "reading from it (backpressure).");
ABSL_FLAG(int64_t, low_watermark, 0,
          "Reading resumes once unsent output drains to this; 0 means a quarter "
          "of --high-watermark.");
ABSL_FLAG(int64_t, max_output, 0,
          "Bytes of unsent output per connection that close it as a slow consumer "
          "(output from mail, timers or offloaded work, which the high watermark "
          "cannot pause); 0 means 4 x --high-watermark. Must exceed --high-watermark.");
ABSL_FLAG(int64_t, mailbox_capacity, 1024,
          "User mails that may wait in one actor's mailbox; beyond it "
          "--mailbox-overflow decides.");
ABSL_FLAG(std::string, mailbox_overflow, "drop-newest",
          "At a full mailbox: drop-newest (the arriving mail), drop-oldest, or "
          "close (the actor, as mailbox_overflow). Every drop is counted.");
ABSL_FLAG(int64_t, max_pending_work, 1024,
          "Replies owed by offloaded work per connection beyond which no more of "
          "its requests are taken until one is out (work mode's bound).");
ABSL_FLAG(int64_t, inbox_capacity, 65536,
          "User mails that may wait in one reactor's inbox from other threads; "
          "more are refused (counted as inbox_full).");
ABSL_FLAG(absl::Duration, idle_timeout, absl::ZeroDuration(),
          "Close connections with no traffic for this long, e.g. 30s; 0 or inf is off.");
ABSL_FLAG(absl::Duration, flush_timeout, absl::Seconds(30),
          "How long a closing connection may take to flush its queued output "
          "(flush_timeout); inf: no limit.");
ABSL_FLAG(absl::Duration, linger_timeout, absl::Seconds(5),
          "After our FIN, how long to wait for the peer to close (linger_timeout).");
ABSL_FLAG(int64_t, max_connections, 0,
          "Open connections beyond this are accepted and closed at once "
          "(counted as rejected); 0 means no limit (the descriptor limit still "
          "applies).");
ABSL_FLAG(bool, proxy_protocol, false,
          "Behind HAProxy (send-proxy / send-proxy-v2): every connection must "
          "begin with a PROXY protocol v1 or v2 header, and actors see the client "
          "it names. Never on a port clients reach directly.");
ABSL_FLAG(absl::Duration, proxy_header_timeout, absl::Seconds(5),
          "With --proxy-protocol: close a connection whose header is not complete "
          "this long after it was accepted; must be > 0.");
ABSL_FLAG(std::string, tls_cert, "",
          "Serve TLS (1.2 and 1.3) with this PEM certificate (chain) file; needs "
          "--tls-key. Actors still see plaintext. Not with --proxy-protocol.");
ABSL_FLAG(std::string, tls_key, "", "With --tls-cert: the PEM private key file (unencrypted).");
ABSL_FLAG(absl::Duration, tls_handshake_timeout, absl::Seconds(10),
          "With --tls-cert: close a connection whose TLS handshake is not complete "
          "this long after it was accepted (tls_handshake_timeout); must be > 0.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(10),
          "On SIGINT/SIGTERM: how long connections may take to flush (and to get "
          "the replies still owed to them) before they are cut; inf waits for "
          "them all. A second signal cuts them at once.");
ABSL_FLAG(absl::Duration, drain_grace, absl::ZeroDuration(),
          "On SIGINT/SIGTERM: /healthz answers 503 (and --agent-port \"drain\") at "
          "once, but accepting goes on this long, so a load balancer sees the "
          "failed check before connections are refused; then the drain. 0 (the "
          "default, standalone): stop accepting at once. Behind HAProxy: more "
          "than inter x fall of its check (docs/deploy.md).");
ABSL_FLAG(std::string, accept_mode, "acceptor",
          "acceptor: one acceptor thread hands sockets to reactors over lock-free "
          "queues; reuseport: each reactor accepts on its own SO_REUSEPORT "
          "listener (no handoff, but the kernel's hash decides the spread).");
ABSL_FLAG(std::string, balance, "round-robin",
          "acceptor mode: round-robin or least-loaded (fewest open connections).");
ABSL_FLAG(bool, pin_cpus, false,
          "Pin reactor i to CPU (--first-cpu + i): steadier latency on a quiet "
          "machine, worse when sharing cores with a busy process.");
ABSL_FLAG(int, first_cpu, 0, "With --pin-cpus: the CPU of reactor 0.");
ABSL_FLAG(int, metrics_port, -1,
          "Serve Prometheus /metrics and /healthz on this port (0 picks one); "
          "-1 is off.");
ABSL_FLAG(std::string, metrics_host, "127.0.0.1", "Address for --metrics-port and --agent-port.");
ABSL_FLAG(int, agent_port, -1,
          "Answer HAProxy's agent-check on this port (0 picks one): \"up ready "
          "N%\" with a weight that follows the reactors' measured load, or "
          "\"drain\" once the drain begins. Needs --metrics-port; -1 is off.");
ABSL_FLAG(std::string, admin, "off",
          "Runtime controls on the metrics port (docs/deploy.md): off; loopback "
          "(only with a loopback --metrics-host: any local user may use them); or "
          "token (Authorization: Bearer, the content of --admin-token-file). "
          "Pause/resume accepting, max-connections, log level, top connections.");
ABSL_FLAG(std::string, admin_token_file, "",
          "With --admin=token: the file holding the bearer token (trimmed); keep "
          "it mode 0600.");
ABSL_FLAG(std::string, bus, "",
          "Carry chat-group broadcasts to the other nodes of a cluster over Redis "
          "pub/sub: redis://HOST:PORT. Empty: this node only. Local delivery "
          "never waits for Redis; while it is away the bus reconnects with backoff "
          "and counts what it could not carry (troupe_bus_* on /metrics).");
ABSL_FLAG(std::string, bus_prefix, "troupe:",
          "With --bus: the Redis channel prefix; only nodes sharing it hear each other.");
ABSL_FLAG(std::string, handoff_socket, "",
          "Offer the listening socket on this Unix socket path (mode 0600) to a new "
          "echo-cluster started with --takeover PATH: a restart that refuses and "
          "resets no connection. Once the new one serves, this one drains as on "
          "SIGTERM. Acceptor mode only.");
ABSL_FLAG(absl::Duration, defer_accept, absl::ZeroDuration(),
          "TCP_DEFER_ACCEPT (nginx's `deferred`): accept a connection only once its "
          "first bytes arrived, waiting up to about this long (e.g. 5s); for client-"
          "speaks-first protocols. With --handoff-socket it makes a takeover answer "
          "every request (docs/deploy.md). 0: off.");
ABSL_FLAG(std::string, takeover, "",
          "Take the listening socket over from the echo-cluster offering it at this "
          "Unix socket path (its --handoff-socket) instead of binding --host/--port; "
          "then offer it at the same path (or --handoff-socket) for the next restart.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning, error or off.");
ABSL_FLAG(absl::Duration, stats_interval, absl::ZeroDuration(),
          "Log a one-line summary this often, e.g. 5s; 0 is off.");

namespace {

constexpr char kUsage[] =
    "troupe's multi-reactor echo server: one acceptor thread, N reactor threads\n"
    "(one epoll loop each), one actor per connection.\n\n"
    "Usage: echo-cluster [--host=127.0.0.1] [--port=7007] [--workers=N] "
    "[--mode=echo|upper|ack|chat|work] [flags]\n\n"
    "Example: echo-cluster --workers 8 --port 7007 --metrics-port 9100\n"
    "Flags may be written with dashes or underscores. Stops cleanly on SIGINT "
    "or SIGTERM.";

[[noreturn]] void Usage(const char* argv0, std::string_view message) {
  troupe::cli::UsageError(argv0, message);
}

// One summary line from two snapshots `seconds` apart.
void LogStats(const troupe::ReactorStats& now, const troupe::ReactorStats& before, double seconds) {
  const double mib = 1024.0 * 1024.0;
  TROUPE_LOG(kInfo,
             "stats: open=%d accepted=%d closed=%d in=%.2f MiB/s out=%.2f MiB/s "
             "mail=%d dropped=%d shed=%d slow_consumers=%d",
             now.open, now.accepted, now.closed,
             static_cast<double>(now.bytes_in - before.bytes_in) / mib / seconds,
             static_cast<double>(now.bytes_out - before.bytes_out) / mib / seconds,
             now.mail_delivered, now.mail_dropped, now.frames_shed,
             now.closed_by_reason[static_cast<size_t>(troupe::CloseReason::kSlowConsumer)]);
}

// Offers `listen_fd` at `path` to the next echo-cluster --takeover; once it
// serves, this process drains as on SIGTERM.
absl::StatusOr<std::unique_ptr<troupe::HandoffServer>> MakeHandoff(const std::string& path,
                                                                   int listen_fd,
                                                                   const troupe::Address& address) {
  return troupe::HandoffServer::Create(path, listen_fd, address.ToString(),
                                       [](pid_t) { troupe::RequestStop(); });
}

}  // namespace

int main(int argc, char* argv[]) {
  std::vector<char*> rest = troupe::cli::ParseFlagsOrExit(argc, argv, kUsage);
  if (rest.size() > 1) Usage(argv[0], absl::StrCat("unexpected argument '", rest[1], "'"));
  const int port = absl::GetFlag(FLAGS_port);
  if (port < 0 || port > 65535) Usage(argv[0], absl::StrCat("--port must be 0..65535, got ", port));
  const int workers = absl::GetFlag(FLAGS_workers);
  if (workers < 0 || workers > 1024) {
    Usage(argv[0], absl::StrCat("--workers must be 0..1024, got ", workers));
  }
  if (absl::GetFlag(FLAGS_max_line) < 1 || absl::GetFlag(FLAGS_max_frame) < 1) {
    Usage(argv[0], "--max-line and --max-frame must be at least 1");
  }
  // The length prefix is 32 bits; a line beyond 4 GiB is no line.
  if (absl::GetFlag(FLAGS_max_line) > UINT32_MAX || absl::GetFlag(FLAGS_max_frame) > UINT32_MAX) {
    Usage(argv[0], "--max-line and --max-frame must be at most 4294967295");
  }
  if (absl::GetFlag(FLAGS_offload_threads) < 0) Usage(argv[0], "--offload-threads must be >= 0");
  const int64_t high = absl::GetFlag(FLAGS_high_watermark);
  int64_t low = absl::GetFlag(FLAGS_low_watermark);
  if (high < 1) Usage(argv[0], "--high-watermark must be at least 1");
  if (low == 0) low = high / 4;
  if (low < 0 || low > high) Usage(argv[0], "--low-watermark must be 0..--high-watermark");
  int64_t max_output = absl::GetFlag(FLAGS_max_output);
  if (max_output < 0) Usage(argv[0], "--max-output must be >= 0");
  if (max_output == 0) max_output = high > INT64_MAX / 4 ? INT64_MAX : high * 4;
  if (max_output <= high) {
    Usage(argv[0], absl::StrCat("--max-output (", max_output, ") must exceed --high-watermark (",
                                high, ")"));
  }
  if (absl::GetFlag(FLAGS_mailbox_capacity) < 0 || absl::GetFlag(FLAGS_inbox_capacity) < 0) {
    Usage(argv[0], "--mailbox-capacity and --inbox-capacity must be >= 0");
  }
  absl::StatusOr<troupe::MailboxOverflow> overflow =
      troupe::ParseMailboxOverflow(absl::GetFlag(FLAGS_mailbox_overflow));
  if (!overflow.ok()) Usage(argv[0], troupe::AsStd(overflow.status().message()));
  if (absl::GetFlag(FLAGS_idle_timeout) < absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_drain_timeout) < absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_drain_grace) < absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_defer_accept) < absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_stats_interval) < absl::ZeroDuration()) {
    Usage(argv[0], "durations must not be negative");
  }
  if (absl::GetFlag(FLAGS_defer_accept) > absl::Hours(1)) {
    Usage(argv[0], "--defer-accept must be at most 1h");
  }
  // Zero would cut every closing connection at once: say "inf" for no limit.
  if (absl::GetFlag(FLAGS_flush_timeout) <= absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_linger_timeout) <= absl::ZeroDuration()) {
    Usage(argv[0], "--flush-timeout and --linger-timeout must be > 0 (inf: no limit)");
  }
  if (absl::GetFlag(FLAGS_max_pending_work) < 1 ||
      absl::GetFlag(FLAGS_max_pending_work) > UINT32_MAX) {
    Usage(argv[0], "--max-pending-work must be 1..4294967295");
  }
  if (absl::GetFlag(FLAGS_max_connections) < 0) Usage(argv[0], "--max-connections must be >= 0");
  if (absl::GetFlag(FLAGS_proxy_header_timeout) <= absl::ZeroDuration()) {
    Usage(argv[0], "--proxy-header-timeout must be > 0");
  }
  const bool tls = !absl::GetFlag(FLAGS_tls_cert).empty() || !absl::GetFlag(FLAGS_tls_key).empty();
  if (tls && (absl::GetFlag(FLAGS_tls_cert).empty() || absl::GetFlag(FLAGS_tls_key).empty())) {
    Usage(argv[0], "--tls-cert and --tls-key go together");
  }
  if (tls && absl::GetFlag(FLAGS_proxy_protocol)) {
    Usage(argv[0],
          "--tls-cert with --proxy-protocol is not supported (the PROXY header would come in "
          "plaintext before the handshake): terminate TLS at the proxy instead");
  }
  if (absl::GetFlag(FLAGS_tls_handshake_timeout) <= absl::ZeroDuration()) {
    Usage(argv[0], "--tls-handshake-timeout must be > 0");
  }
  if (absl::GetFlag(FLAGS_first_cpu) < 0) Usage(argv[0], "--first-cpu must be >= 0");
  troupe::AcceptMode accept_mode = troupe::AcceptMode::kAcceptorThread;
  if (absl::GetFlag(FLAGS_accept_mode) == "reuseport") {
    accept_mode = troupe::AcceptMode::kReusePort;
  } else if (absl::GetFlag(FLAGS_accept_mode) != "acceptor") {
    Usage(argv[0], "--accept-mode must be acceptor or reuseport");
  }
  troupe::Balance balance = troupe::Balance::kRoundRobin;
  if (absl::GetFlag(FLAGS_balance) == "least-loaded") {
    balance = troupe::Balance::kLeastLoaded;
  } else if (absl::GetFlag(FLAGS_balance) != "round-robin") {
    Usage(argv[0], "--balance must be round-robin or least-loaded");
  }
  const int metrics_port = absl::GetFlag(FLAGS_metrics_port);
  if (metrics_port < -1 || metrics_port > 65535) {
    Usage(argv[0], "--metrics-port must be -1 (off) or 0..65535");
  }
  const int agent_port = absl::GetFlag(FLAGS_agent_port);
  if (agent_port < -1 || agent_port > 65535) {
    Usage(argv[0], "--agent-port must be -1 (off) or 0..65535");
  }
  if (agent_port >= 0 && metrics_port < 0) Usage(argv[0], "--agent-port needs --metrics-port");
  absl::StatusOr<troupe::AdminAuth> admin = troupe::ParseAdminAuth(absl::GetFlag(FLAGS_admin));
  if (!admin.ok()) Usage(argv[0], absl::StrCat("--admin: ", admin.status().message()));
  if (*admin != troupe::AdminAuth::kOff && metrics_port < 0) {
    Usage(argv[0], "--admin needs --metrics-port");
  }
  if ((*admin == troupe::AdminAuth::kToken) == absl::GetFlag(FLAGS_admin_token_file).empty()) {
    Usage(argv[0], "--admin-token-file goes with --admin=token, and only with it");
  }
  const std::string takeover_path = absl::GetFlag(FLAGS_takeover);
  // A process that took over offers the socket again for the next restart.
  const std::string handoff_path = absl::GetFlag(FLAGS_handoff_socket).empty()
                                       ? takeover_path
                                       : absl::GetFlag(FLAGS_handoff_socket);
  if (!handoff_path.empty() && accept_mode == troupe::AcceptMode::kReusePort) {
    Usage(argv[0], "--handoff-socket and --takeover need --accept-mode=acceptor (one socket)");
  }
  if (absl::GetFlag(FLAGS_drain_grace) == absl::InfiniteDuration()) {
    Usage(argv[0], "--drain-grace must be finite (it delays every stop by that much)");
  }
  absl::StatusOr<troupe::LogLevel> level = troupe::ParseLogLevel(absl::GetFlag(FLAGS_log_level));
  if (!level.ok()) Usage(argv[0], troupe::AsStd(level.status().message()));
  troupe::SetLogLevel(*level);

  // Block the stop signals before any thread starts (threads inherit the
  // mask): otherwise SIGTERM may land on, say, an offload worker and kill the
  // process instead of reaching the sigwait below.
  troupe::BlockStopSignals();
  troupe::OffloadPool offload(
      absl::GetFlag(FLAGS_mode) == "work" ? absl::GetFlag(FLAGS_offload_threads) : 1);
  troupe::BuiltinOptions builtin;
  builtin.mode = absl::GetFlag(FLAGS_mode);
  builtin.codec = absl::GetFlag(FLAGS_codec);
  builtin.max_line = static_cast<size_t>(absl::GetFlag(FLAGS_max_line));
  builtin.max_frame = static_cast<size_t>(absl::GetFlag(FLAGS_max_frame));
  builtin.work_us = absl::GetFlag(FLAGS_work_us);
  builtin.offload = &offload;
  absl::StatusOr<troupe::HandlerFactory> factory = troupe::MakeBuiltinFactory(builtin);
  if (!factory.ok()) Usage(argv[0], troupe::AsStd(factory.status().message()));

  absl::StatusOr<troupe::Address> address =
      troupe::Address::FromHostPort(absl::GetFlag(FLAGS_host), static_cast<uint16_t>(port));
  if (!address.ok()) {
    std::fprintf(stderr, "echo-cluster: %s\n", std::string(address.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<troupe::Address> metrics_address;
  if (metrics_port >= 0) {
    metrics_address = troupe::Address::FromHostPort(absl::GetFlag(FLAGS_metrics_host),
                                                    static_cast<uint16_t>(metrics_port));
    if (!metrics_address.ok()) {
      std::fprintf(stderr, "echo-cluster: --metrics-host: %s\n",
                   std::string(metrics_address.status().message()).c_str());
      return 1;
    }
  }

  std::unique_ptr<troupe::RedisBus> bus;
  if (!absl::GetFlag(FLAGS_bus).empty()) {
    absl::StatusOr<troupe::Address> redis = troupe::ParseRedisUrl(absl::GetFlag(FLAGS_bus));
    if (!redis.ok()) Usage(argv[0], absl::StrCat("--bus: ", redis.status().message()));
    troupe::RedisBusOptions bus_options;
    bus_options.redis = *redis;
    bus_options.channel_prefix = absl::GetFlag(FLAGS_bus_prefix);
    absl::StatusOr<std::unique_ptr<troupe::RedisBus>> b = troupe::RedisBus::Create(bus_options);
    if (!b.ok()) Usage(argv[0], absl::StrCat("--bus: ", b.status().message()));
    bus = *std::move(b);
  }

  // Before anything binds: a bad certificate or key is the operator's to fix,
  // and the message names the file.
  std::shared_ptr<troupe::TransportFactory> tls_factory;
  if (tls) {
    absl::StatusOr<std::shared_ptr<troupe::TransportFactory>> made = troupe::NewTlsServerFactory(
        {.cert_file = absl::GetFlag(FLAGS_tls_cert), .key_file = absl::GetFlag(FLAGS_tls_key)});
    if (!made.ok()) {
      std::fprintf(stderr, "echo-cluster: %s\n", std::string(made.status().message()).c_str());
      return 1;
    }
    tls_factory = *std::move(made);
  }

  troupe::RaiseOpenFileLimitToHard();

  // The listening socket: taken over from a running echo-cluster, passed by
  // systemd (socket activation), bound here (to be offered for a handoff),
  // or else bound by the Server. The first two ignore --host/--port.
  troupe::ListenOptions listen_options;
  listen_options.defer_accept_seconds = static_cast<int>(
      absl::ToInt64Seconds(absl::Ceil(absl::GetFlag(FLAGS_defer_accept), absl::Seconds(1))));
  troupe::Fd listener;
  std::optional<troupe::Takeover> takeover;
  if (!takeover_path.empty()) {
    absl::StatusOr<troupe::Takeover> t =
        troupe::Takeover::Receive(takeover_path, absl::Seconds(10));
    if (!t.ok()) {
      std::fprintf(stderr, "echo-cluster: %s\n", std::string(t.status().message()).c_str());
      return 1;
    }
    takeover = *std::move(t);
    listener = troupe::Fd(takeover->ReleaseListenFd());
    TROUPE_LOG(kInfo, "takeover %s: received %s from pid %d (--host/--port ignored)", takeover_path,
               takeover->address(), takeover->from_pid());
  } else {
    absl::StatusOr<int> passed = troupe::SystemdListenFd();
    if (!passed.ok()) {
      std::fprintf(stderr, "echo-cluster: %s\n", std::string(passed.status().message()).c_str());
      return 1;
    }
    if (*passed >= 0) {
      listener = troupe::Fd(*passed);
      TROUPE_LOG(kInfo, "using the socket systemd passed (fd %d); --host/--port ignored", *passed);
    } else if (!handoff_path.empty()) {
      // Bound here rather than by the Server: the handoff needs the descriptor.
      absl::StatusOr<troupe::Fd> bound = troupe::ListenTcp(*address, listen_options);
      if (!bound.ok()) {
        std::fprintf(stderr, "echo-cluster: %s\n", std::string(bound.status().message()).c_str());
        return 1;
      }
      listener = *std::move(bound);
    }
  }
  // The Server owns it from Create on; this number stays valid (for the
  // handoff to duplicate) while the server accepts.
  const int listen_fd = listener.get();

  troupe::ServerOptions options;
  options.address = *address;
  options.adopt_listen_fd = listener.Release();
  options.listen = listen_options;
  options.workers = workers;
  options.drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  options.drain_grace = absl::GetFlag(FLAGS_drain_grace);
  options.idle_timeout = absl::GetFlag(FLAGS_idle_timeout);
  options.pin_cpus = absl::GetFlag(FLAGS_pin_cpus);
  options.accept_mode = accept_mode;
  options.balance = balance;
  options.first_cpu = absl::GetFlag(FLAGS_first_cpu);
  options.max_connections = static_cast<size_t>(absl::GetFlag(FLAGS_max_connections));
  options.proxy_protocol = absl::GetFlag(FLAGS_proxy_protocol);
  options.proxy_header_timeout = absl::GetFlag(FLAGS_proxy_header_timeout);
  options.transport = tls_factory;
  options.connection.handshake_timeout = absl::GetFlag(FLAGS_tls_handshake_timeout);
  options.connection.high_watermark = static_cast<size_t>(high);
  options.connection.low_watermark = static_cast<size_t>(low);
  options.connection.max_output_bytes = static_cast<size_t>(max_output);
  options.connection.mailbox_capacity = static_cast<size_t>(absl::GetFlag(FLAGS_mailbox_capacity));
  options.connection.mailbox_overflow = *overflow;
  options.connection.flush_timeout = absl::GetFlag(FLAGS_flush_timeout);
  options.connection.max_pending_work =
      static_cast<uint32_t>(absl::GetFlag(FLAGS_max_pending_work));
  options.connection.linger_timeout = absl::GetFlag(FLAGS_linger_timeout);
  options.inbox_mail_capacity = static_cast<size_t>(absl::GetFlag(FLAGS_inbox_capacity));
  absl::StatusOr<std::unique_ptr<troupe::Server>> server =
      troupe::Server::Create(options, std::move(*factory));
  if (!server.ok()) {
    std::fprintf(stderr, "echo-cluster: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  std::unique_ptr<troupe::MetricsServer> metrics;
  if (metrics_port >= 0) {
    troupe::MetricsServerOptions metrics_options;
    if (bus) metrics_options.extra = [b = bus.get()] { return b->RenderPrometheus(); };
    if (agent_port >= 0) {
      troupe::Address agent = *metrics_address;
      agent.set_port(static_cast<uint16_t>(agent_port));
      metrics_options.agent_address = agent;
    }
    metrics_options.admin.auth = *admin;
    metrics_options.admin.token_file = absl::GetFlag(FLAGS_admin_token_file);
    absl::StatusOr<std::unique_ptr<troupe::MetricsServer>> m =
        troupe::MetricsServer::Create(*metrics_address, server->get(), std::move(metrics_options));
    if (!m.ok()) {
      std::fprintf(stderr, "echo-cluster: metrics: %s\n",
                   std::string(m.status().message()).c_str());
      return 1;
    }
    metrics = std::move(*m);
  }
  // A fresh start with --handoff-socket fails here if PATH cannot be bound;
  // after a takeover, see below.
  absl::StatusOr<std::unique_ptr<troupe::HandoffServer>> handoff =
      std::unique_ptr<troupe::HandoffServer>();
  if (!handoff_path.empty() && !takeover) {
    handoff = MakeHandoff(handoff_path, listen_fd, (*server)->address());
    if (!handoff.ok()) {
      std::fprintf(stderr, "echo-cluster: --handoff-socket: %s\n",
                   std::string(handoff.status().message()).c_str());
      return 1;
    }
  }
  if (bus) troupe::AttachBus(**server, *bus);
  (*server)->Start();
  if (metrics) metrics->Start();
  if (takeover) {
    // We serve: only now may the old process stop accepting and drain.
    if (absl::Status s = takeover->Confirm(absl::Seconds(10)); !s.ok()) {
      TROUPE_LOG(kWarning, "%s; serving anyway", std::string(s.message()));
    } else {
      TROUPE_LOG(kInfo, "takeover %s: pid %d is draining; serving %s alone", takeover_path,
                 takeover->from_pid(), (*server)->address().ToString());
    }
    // Offered again only now: until the old process drains, the path is its.
    handoff = MakeHandoff(handoff_path, listen_fd, (*server)->address());
    if (!handoff.ok()) {
      // Exiting now would leave no one serving: go on without the offer.
      TROUPE_LOG(kWarning, "--handoff-socket: %s; no takeover offered",
                 std::string(handoff.status().message()));
    }
  }
  if (handoff.ok() && *handoff != nullptr) {
    (*handoff)->Start();
    TROUPE_LOG(kInfo, "handoff %s: offering %s to the next echo-cluster --takeover", handoff_path,
               (*server)->address().ToString());
  }
  // Printed once everything listens (the handoff path included): scripts
  // and tests wait for this line.
  std::printf("echo-cluster listening on %s with %d workers%s\n",
              (*server)->address().ToString().c_str(), (*server)->workers(), tls ? " (TLS)" : "");
  troupe::SystemdNotifier systemd(**server);
  systemd.Ready(absl::StrCat("serving on ", (*server)->address().ToString(), " with ",
                             (*server)->workers(), " workers"));
  if (metrics) std::printf("metrics on http://%s/metrics\n", metrics->address().ToString().c_str());
  if (bus) {
    std::printf("group bus %s (node %s)\n", absl::GetFlag(FLAGS_bus).c_str(),
                bus->node_id().c_str());
  }
  if (metrics && metrics->agent_address()) {
    std::printf("agent check on %s\n", metrics->agent_address()->ToString().c_str());
  }
  std::fflush(stdout);
  TROUPE_LOG(kInfo, "started: %s, %d workers, mode %s", (*server)->address().ToString(),
             (*server)->workers(), builtin.mode);

  // Wait for a stop signal, logging a summary every --stats-interval; drain;
  // a second signal cuts the drain (the lifecycle of core/ops/signals.h).
  troupe::ReactorStats last = (*server)->Stats().Total();
  absl::Time last_time = absl::Now();
  troupe::StopSignalHooks hooks;
  hooks.tick_interval = absl::GetFlag(FLAGS_stats_interval);
  hooks.on_tick = [&] {
    troupe::ReactorStats now = (*server)->Stats().Total();
    LogStats(now, last, absl::ToDoubleSeconds(absl::Now() - last_time));
    last = now;
    last_time = absl::Now();
  };
  hooks.on_signal = [&](int sig) {
    TROUPE_LOG(kInfo,
               "%s: draining (health check failing now; accepting for %s more, then "
               "up to %s to flush; a second signal cuts connections now)",
               sig == SIGINT    ? "SIGINT"
               : sig == SIGTERM ? "SIGTERM"
                                : "taken over",
               absl::FormatDuration(absl::GetFlag(FLAGS_drain_grace)),
               absl::FormatDuration(absl::GetFlag(FLAGS_drain_timeout)));
    systemd.Stopping("draining");
    // Our copy of the socket must not keep it alive once the server stops
    // accepting (connects would queue with no one to accept them); after a
    // takeover the handoff thread has already let go of it.
    if (handoff.ok() && *handoff != nullptr) (*handoff)->Stop();
  };
  hooks.on_abort = [] { TROUPE_LOG(kWarning, "second signal: closing every connection now"); };
  troupe::DrainOnStopSignal(**server, hooks);
  systemd.Stop();
  if (metrics) metrics->Stop();
  // After the reactors (they publish on it), before the server is destroyed.
  if (bus) bus->Stop();
  const troupe::ServerStats stats = (*server)->Stats();
  const troupe::ReactorStats total = stats.Total();
  TROUPE_LOG(kInfo,
             "stopped: %d connections served, %d bytes in, %d bytes out, %d cut at the "
             "drain deadline",
             total.accepted, total.bytes_in, total.bytes_out,
             total.closed_by_reason[static_cast<size_t>(troupe::CloseReason::kShutdown)]);
  return 0;
}
