#include "core/ops/metrics_server.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/log.h"
#include "core/loop/listener.h"
#include "core/net/socket.h"
#include "core/ops/http_request.h"

namespace troupe {
namespace {

// A request head larger than this is refused (431): enough for any scraper.
constexpr size_t kMaxRequestHead = 8 * 1024;
// A request body larger than this is refused (413): the admin endpoints
// take a number or a word.
constexpr size_t kMaxBody = 1024;
// Clients served at once; more wait in the listen backlog.
constexpr size_t kMaxClients = 64;
// A client is dropped this long after it connected, whatever it is doing
// (a slow-loris scraper cannot hold a slot); idle, flush and linger are each
// bounded by it too.
constexpr absl::Duration kClientDeadline = absl::Seconds(5);

void Family(std::string& out, const char* name, const char* type, const char* help) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

template <typename Get>
void PerReactor(std::string& out, const ServerStats& stats, const char* name, const char* type,
                const char* help, Get get) {
  Family(out, name, type, help);
  for (size_t i = 0; i < stats.reactors.size(); ++i) {
    absl::StrAppend(&out, name, "{reactor=\"", i, "\"} ", get(stats.reactors[i]), "\n");
  }
}

// A counter family labelled by reactor and by reason: `Count` reasons,
// named by `name_of`, valued by `get(reactor_stats, reason)`.
template <typename Reason, typename Get>
void ByReason(std::string& out, const ServerStats& stats, const char* name, const char* help,
              const char* (*name_of)(Reason), Get get) {
  Family(out, name, "counter", help);
  for (size_t i = 0; i < stats.reactors.size(); ++i) {
    for (size_t reason = 0; reason < static_cast<size_t>(Reason::kCount); ++reason) {
      absl::StrAppend(&out, name, "{reactor=\"", i, "\",reason=\"",
                      name_of(static_cast<Reason>(reason)), "\"} ", get(stats.reactors[i], reason),
                      "\n");
    }
  }
}

// What the handlers share. The load sample is the agent thread's alone.
struct Shared {
  Server* server;
  std::function<std::string()> extra;
  // The runtime controls; null when off. The HTTP thread's alone.
  std::unique_ptr<AdminEndpoint> admin;
  // The previous agent check's load sample.
  absl::Time sampled_at = absl::Now();
  uint64_t busy_ns = 0;
  int weight = 100;
};

std::string Text(int code, std::string_view body, bool head_only = false) {
  return HttpResponse(code, "text/plain", body, head_only);
}

// The response to a complete request that is not for /admin/.
std::string Answer(const HttpRequest& request, const Shared& shared) {
  const Server& server = *shared.server;
  const bool head_only = request.method == "HEAD";
  if (request.method != "GET" && !head_only) return Text(405, "GET or HEAD only\n");
  if (request.path == "/metrics") {
    std::string body = RenderPrometheus(server.Stats(), server.accepting());
    Family(body, "troupe_serving", "gauge",
           "1 while the health check passes, 0 from the moment the drain begins.");
    absl::StrAppend(&body, "troupe_serving ", server.serving() ? 1 : 0, "\n");
    Family(body, "troupe_accept_paused", "gauge",
           "1 while an operator has paused accepting (POST /admin/accept/pause).");
    absl::StrAppend(&body, "troupe_accept_paused ", server.accept_paused() ? 1 : 0, "\n");
    Family(body, "troupe_max_connections", "gauge",
           "The max-connections gate (0: no limit); changed at run time by "
           "POST /admin/max-connections.");
    absl::StrAppend(&body, "troupe_max_connections ", server.max_connections(), "\n");
    if (shared.admin) shared.admin->RenderPrometheus(body);
    if (shared.extra) body.append(shared.extra());
    return HttpResponse(200, "text/plain; version=0.0.4; charset=utf-8", body, head_only);
  }
  if (request.path == "/healthz") {
    // Paused: failing, so that a balancer sends new clients elsewhere while
    // they would only wait in our backlog.
    if (!server.serving()) return Text(503, "draining\n", head_only);
    if (server.accept_paused()) return Text(503, "paused\n", head_only);
    return Text(200, "ok\n", head_only);
  }
  return Text(404, "not found\n", head_only);
}

// One client: reads the request, answers it, and closes after the flush
// (Connection's FIN-then-linger, so the response is never lost to a RST).
// Requests are one per connection ("Connection: close"). An admin answer
// may come later, from the admin endpoint (it closes the connection then).
class HttpHandler final : public ConnectionHandler {
 public:
  explicit HttpHandler(const Shared& shared) : shared_(shared) {}
  void OnOpen(Connection& conn) override {
    Reactor& loop = conn.reactor();
    loop.RunAfter(kClientDeadline, [&loop, id = conn.id()] {
      if (Connection* late = loop.Find(id)) late->Close(CloseReason::kIdleTimeout);
    });
  }
  size_t OnData(Connection& conn, std::string_view data) override {
    if (answering_) return data.size();  // one request per connection
    const HttpParse parse = ParseHttpRequest(data, kMaxRequestHead, kMaxBody);
    if (parse.status == HttpParse::kIncomplete) return 0;  // keep it, wait for more
    answering_ = true;
    if (parse.status == HttpParse::kError) {
      conn.Send(Text(parse.code, parse.error + "\n"));
    } else if (parse.request.path.substr(0, 7) == "/admin/") {
      // Off: as if there were no such path.
      std::optional<std::string> now = shared_.admin != nullptr
                                           ? shared_.admin->Handle(parse.request, conn)
                                           : Text(404, "not found\n");
      if (!now.has_value()) return data.size();  // the endpoint answers later
      conn.Send(*now);
    } else {
      conn.Send(Answer(parse.request, shared_));
    }
    conn.CloseAfterFlush();
    return data.size();
  }
  // A client that half-closes after its request still gets a later answer
  // (the admin endpoint closes the connection then, the deadline at worst).
  void OnPeerClosed(Connection& conn) override {
    if (!answering_) conn.CloseAfterFlush();
  }

 private:
  const Shared& shared_;
  bool answering_ = false;
};

// The reactors' busy fraction since the previous check (the first: since
// the metrics server was created). Checks closer together than this keep
// the previous figure, so a burst of checks cannot make it noisy.
constexpr absl::Duration kMinSample = absl::Milliseconds(200);

std::string AgentLine(Shared& shared) {
  const Server& server = *shared.server;
  if (!server.serving() || server.accept_paused()) return "drain\n";
  const ServerStats stats = server.Stats();
  uint64_t busy_ns = 0;
  for (const ReactorStats& r : stats.reactors) busy_ns += r.turn_sum_ns;
  const absl::Time now = absl::Now();
  const absl::Duration wall = now - shared.sampled_at;
  if (wall >= kMinSample && !stats.reactors.empty()) {
    const double busy =
        static_cast<double>(busy_ns - shared.busy_ns) /
        (absl::ToDoubleNanoseconds(wall) * static_cast<double>(stats.reactors.size()));
    shared.weight = AgentWeightPercent(busy);
    shared.sampled_at = now;
    shared.busy_ns = busy_ns;
  }
  return absl::StrCat("up ready ", shared.weight, "%\n");
}

// One agent check: the line, then close (HAProxy reads until the close).
class AgentHandler final : public ConnectionHandler {
 public:
  explicit AgentHandler(Shared& shared) : shared_(shared) {}
  void OnOpen(Connection& conn) override {
    conn.Send(AgentLine(shared_));
    conn.CloseAfterFlush();
  }
  size_t OnData(Connection& /*conn*/, std::string_view data) override { return data.size(); }

 private:
  Shared& shared_;
};

}  // namespace

int AgentWeightPercent(double busy) {
  const double idle = 1.0 - std::clamp(busy, 0.0, 1.0);
  return std::clamp(static_cast<int>(std::lround(idle * 100.0)), 1, 100);
}

std::string RenderPrometheus(const ServerStats& stats, bool accepting) {
  std::string out;
  out.reserve(4096 + stats.reactors.size() * 2048);
  Family(out, "troupe_up", "gauge", "1 while the server accepts connections, 0 while draining.");
  absl::StrAppend(&out, "troupe_up ", accepting ? 1 : 0, "\n");
  // Every exported row of the counter table (core/loop/reactor_stats.h).
  for (const ReactorCounterInfo& counter : kReactorCounterInfo) {
    if (counter.metric == nullptr) continue;
    PerReactor(out, stats, counter.metric, counter.type, counter.help,
               [&counter](const ReactorStats& r) { return r.*counter.field; });
  }
  ByReason(out, stats, "troupe_connections_closed_total", "Connections closed, by reason.",
           CloseReasonName,
           [](const ReactorStats& r, size_t reason) { return r.closed_by_reason[reason]; });
  ByReason(out, stats, "troupe_mail_dropped_total",
           "Mail that did not reach its actor, by reason (gone, invalid_ref, inbox_full, "
           "mailbox_full, evicted, actor_closed).",
           MailDropName,
           [](const ReactorStats& r, size_t reason) { return r.mail_dropped_by_reason[reason]; });
  Family(out, "troupe_loop_turn_seconds", "histogram",
         "Time a reactor spent on one loop turn, after epoll_wait returned.");
  for (size_t i = 0; i < stats.reactors.size(); ++i) {
    const ReactorStats& r = stats.reactors[i];
    for (size_t b = 0; b < ReactorStats::kTurnBucketsUs.size(); ++b) {
      absl::StrAppend(
          &out, "troupe_loop_turn_seconds_bucket{reactor=\"", i, "\",le=\"",
          absl::StrFormat("%g", static_cast<double>(ReactorStats::kTurnBucketsUs[b]) / 1e6), "\"} ",
          r.turn_buckets[b], "\n");
    }
    absl::StrAppend(&out, "troupe_loop_turn_seconds_bucket{reactor=\"", i, "\",le=\"+Inf\"} ",
                    r.turn_buckets.back(), "\n");
    absl::StrAppend(&out, "troupe_loop_turn_seconds_sum{reactor=\"", i, "\"} ",
                    absl::StrFormat("%.9f", static_cast<double>(r.turn_sum_ns) / 1e9), "\n");
    absl::StrAppend(&out, "troupe_loop_turn_seconds_count{reactor=\"", i, "\"} ",
                    r.turn_buckets.back(), "\n");
  }
  Family(out, "troupe_connections_refused_total", "counter",
         "Connections shed by the acceptor because descriptors ran out.");
  absl::StrAppend(&out, "troupe_connections_refused_total ", stats.refused, "\n");
  Family(out, "troupe_connections_rejected_total", "counter",
         "Connections closed at once because max_connections were open.");
  absl::StrAppend(&out, "troupe_connections_rejected_total ", stats.rejected, "\n");

  return out;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Create(
    const Address& address, Server* server, MetricsServerOptions metrics_options) {
  absl::StatusOr<std::unique_ptr<AdminEndpoint>> admin =
      AdminEndpoint::Create(metrics_options.admin, address, server);
  if (!admin.ok()) return admin.status();
  absl::StatusOr<Fd> listen_fd = ListenTcp(address);
  if (!listen_fd.ok()) return listen_fd.status();
  absl::StatusOr<Address> bound = LocalAddress(listen_fd->get());
  if (!bound.ok()) return bound.status();
  absl::StatusOr<Fd> agent_fd;
  std::optional<Address> agent_bound;
  if (metrics_options.agent_address.has_value()) {
    agent_fd = ListenTcp(*metrics_options.agent_address);
    if (!agent_fd.ok()) return agent_fd.status();
    absl::StatusOr<Address> local = LocalAddress(agent_fd->get());
    if (!local.ok()) return local.status();
    agent_bound = *local;
  }
  auto shared = std::make_shared<Shared>();
  shared->server = server;
  shared->extra = std::move(metrics_options.extra);
  shared->admin = std::move(*admin);
  // Each endpoint is one more reactor (the one event loop of core; a
  // reactor has one listener), with a handler per connection.
  auto make_loop = [](Fd fd, HandlerFactory factory) -> absl::StatusOr<std::unique_ptr<Reactor>> {
    ReactorOptions options;
    options.tag_log_lines = false;
    options.idle_timeout = kClientDeadline;
    options.connection.flush_timeout = kClientDeadline;
    options.connection.linger_timeout = kClientDeadline;
    absl::StatusOr<std::unique_ptr<Reactor>> loop = Reactor::Create(options, std::move(factory));
    if (!loop.ok()) return loop.status();
    ListenerOptions listener_options;
    listener_options.pause_at_open = kMaxClients;  // the rest wait in the backlog
    const int raw = fd.get();
    (*loop)->AddListener(std::move(fd),
                         std::make_unique<Listener>(raw, /*max_connections=*/0, nullptr),
                         std::move(listener_options));
    return loop;
  };
  std::vector<std::unique_ptr<Reactor>> loops;
  absl::StatusOr<std::unique_ptr<Reactor>> http =
      make_loop(std::move(*listen_fd), [shared](Connection&) -> std::unique_ptr<ConnectionHandler> {
        return std::make_unique<HttpHandler>(*shared);
      });
  if (!http.ok()) return http.status();
  loops.push_back(std::move(*http));
  if (agent_fd.ok()) {
    absl::StatusOr<std::unique_ptr<Reactor>> agent = make_loop(
        std::move(*agent_fd), [shared](Connection&) -> std::unique_ptr<ConnectionHandler> {
          return std::make_unique<AgentHandler>(*shared);
        });
    if (!agent.ok()) return agent.status();
    loops.push_back(std::move(*agent));
  }
  return std::unique_ptr<MetricsServer>(
      new MetricsServer(std::move(loops), *bound, std::move(agent_bound), std::move(shared)));
}

MetricsServer::MetricsServer(std::vector<std::unique_ptr<Reactor>> loops, Address address,
                             std::optional<Address> agent_address, std::shared_ptr<void> shared)
    : loops_(std::move(loops)),
      address_(std::move(address)),
      agent_address_(std::move(agent_address)),
      shared_(std::move(shared)) {}

MetricsServer::~MetricsServer() { Stop(); }

void MetricsServer::Start() {
  for (auto& loop : loops_) threads_.emplace_back([r = loop.get()] { r->Run(); });
}

void MetricsServer::Stop() {
  for (auto& loop : loops_) loop->StopNow();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

}  // namespace troupe
