#include "core/ops/metrics_server.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/log.h"
#include "core/net/socket.h"

namespace troupe {
namespace {

// A request head larger than this is refused (431): enough for any scraper.
constexpr size_t kMaxRequestHead = 8 * 1024;
// Clients served at once; more wait in the listen backlog.
constexpr int kMaxClients = 64;
// A client that has not finished its request by then is dropped.
constexpr auto kClientDeadline = std::chrono::seconds(5);
// Out of descriptors: stop accepting this long (as the acceptor does).
constexpr auto kExhaustedPause = std::chrono::milliseconds(100);

void Family(std::string& out, const char* name, const char* type, const char* help) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

template <typename Get>
void PerReactor(std::string& out, const ServerStats& stats, const char* name,
                const char* type, const char* help, Get get) {
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

struct Client {
  Fd fd;
  std::string in;
  std::string out;
  size_t sent = 0;
  bool draining = false;  // response sent and FIN out: discard until EOF
  std::chrono::steady_clock::time_point deadline;
};

std::string Response(int code, const char* reason, std::string_view content_type,
                     std::string_view body, bool head_only) {
  std::string r = absl::StrFormat(
      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
      "Connection: close\r\n\r\n",
      code, reason, std::string(content_type), body.size());
  if (!head_only) r.append(body);
  return r;
}

// The response to a complete request head.
std::string Answer(std::string_view head, const Server& server) {
  const std::string_view line = head.substr(0, head.find("\r\n"));
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || sp1 == 0 ||
      line.substr(sp2 + 1, 7) != "HTTP/1." ||
      line.find(' ', sp2 + 1) != std::string_view::npos) {
    return Response(400, "Bad Request", "text/plain", "bad request\n", false);
  }
  const std::string_view method = line.substr(0, sp1);
  std::string_view path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  const bool head_only = method == "HEAD";
  if (method != "GET" && !head_only) {
    return Response(405, "Method Not Allowed", "text/plain", "GET or HEAD only\n", false);
  }
  if (path == "/metrics") {
    return Response(200, "OK", "text/plain; version=0.0.4; charset=utf-8",
                    RenderPrometheus(server.Stats(), server.accepting()), head_only);
  }
  if (path == "/healthz") {
    return server.accepting()
               ? Response(200, "OK", "text/plain", "ok\n", head_only)
               : Response(503, "Service Unavailable", "text/plain", "draining\n", head_only);
  }
  return Response(404, "Not Found", "text/plain", "not found\n", head_only);
}

}  // namespace

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
      absl::StrAppend(&out, "troupe_loop_turn_seconds_bucket{reactor=\"", i, "\",le=\"",
                      absl::StrFormat("%g", ReactorStats::kTurnBucketsUs[b] / 1e6), "\"} ",
                      r.turn_buckets[b], "\n");
    }
    absl::StrAppend(&out, "troupe_loop_turn_seconds_bucket{reactor=\"", i, "\",le=\"+Inf\"} ",
                    r.turn_buckets.back(), "\n");
    absl::StrAppend(&out, "troupe_loop_turn_seconds_sum{reactor=\"", i, "\"} ",
                    absl::StrFormat("%.9f", r.turn_sum_ns / 1e9), "\n");
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

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Create(const Address& address,
                                                                     const Server* server) {
  absl::StatusOr<Fd> listen_fd = ListenTcp(address);
  if (!listen_fd.ok()) return listen_fd.status();
  absl::StatusOr<Address> bound = LocalAddress(listen_fd->get());
  if (!bound.ok()) return bound.status();
  Fd stop(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!stop.valid()) return absl::ErrnoToStatus(errno, "eventfd for metrics");
  return std::unique_ptr<MetricsServer>(
      new MetricsServer(std::move(*listen_fd), std::move(stop), *bound, server));
}

MetricsServer::MetricsServer(Fd listen_fd, Fd stop_fd, Address address, const Server* server)
    : listen_fd_(std::move(listen_fd)),
      stop_fd_(std::move(stop_fd)),
      address_(std::move(address)),
      server_(server) {}

MetricsServer::~MetricsServer() { Stop(); }

void MetricsServer::Start() { thread_ = std::thread([this] { Loop(); }); }

void MetricsServer::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  while (::write(stop_fd_.get(), &one, sizeof(one)) < 0 && errno == EINTR) {
  }
  thread_.join();
}

void MetricsServer::Loop() {
  Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) {
    TROUPE_LOG(kError, "metrics: epoll_create1 failed: %s", std::strerror(errno));
    return;
  }
  auto add = [&](int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    return ::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
  };
  add(stop_fd_.get(), EPOLLIN);
  add(listen_fd_.get(), EPOLLIN);
  absl::flat_hash_map<int, Client> clients;
  // The listener is level-triggered: while it cannot be served (every
  // client slot taken, or descriptors exhausted) it must leave the epoll set,
  // or epoll_wait reports it again at once and the thread spins.
  bool listening = true;
  auto set_listening = [&](bool on) {
    if (on == listening) return;
    if (on) {
      add(listen_fd_.get(), EPOLLIN);
    } else {
      ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, listen_fd_.get(), nullptr);
    }
    listening = on;
  };
  // After EMFILE and friends: not before then (kExhaustedPause).
  std::chrono::steady_clock::time_point resume_at{};

  // Reads the request, writes the answer, then drains until the peer's FIN;
  // edge-triggered, so each call goes as far as the socket allows. Returns
  // false when the client is done with (closed, failed or finished).
  auto handle = [&](Client& c) -> bool {
    char buf[4096];
    auto would_block = [] { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR; };
    while (c.out.empty()) {
      const ssize_t n = ::recv(c.fd.get(), buf, sizeof(buf), 0);
      if (n == 0) return false;
      if (n < 0) return would_block();
      c.in.append(buf, static_cast<size_t>(n));
      if (c.in.find("\r\n\r\n") != std::string::npos) {
        c.out = Answer(c.in, *server_);
      } else if (c.in.size() > kMaxRequestHead) {
        c.out = Response(431, "Request Header Fields Too Large", "text/plain", "too large\n",
                         false);
      }
    }
    while (c.sent < c.out.size()) {
      const ssize_t n = ::send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent,
                               MSG_NOSIGNAL);
      if (n < 0) return would_block();
      c.sent += static_cast<size_t>(n);
    }
    if (!c.draining) {
      ::shutdown(c.fd.get(), SHUT_WR);
      c.draining = true;
    }
    // Close only after the peer's FIN: closing with unread input would send
    // RST and could destroy the response in flight (DESIGN.md, 7).
    while (true) {
      const ssize_t n = ::recv(c.fd.get(), buf, sizeof(buf), 0);
      if (n == 0) return false;
      if (n < 0) return would_block();
    }
  };

  epoll_event events[32];
  while (true) {
    int timeout_ms = 1000;  // the client-deadline sweep's period
    if (!listening && clients.size() < kMaxClients) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(
          resume_at - std::chrono::steady_clock::now());
      timeout_ms = static_cast<int>(std::clamp<int64_t>(left.count(), 0, timeout_ms));
    }
    const int n = ::epoll_wait(epoll.get(), events, 32, timeout_ms);
    const auto now = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == stop_fd_.get()) return;
      if (fd == listen_fd_.get()) {
        while (clients.size() < kMaxClients) {
          const int cfd = ::accept4(listen_fd_.get(), nullptr, nullptr,
                                    SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
              TROUPE_LOG_EVERY_SECOND(kWarning, "metrics: accept: %s; pausing %d ms",
                                      std::strerror(errno), kExhaustedPause.count());
              set_listening(false);
              resume_at = now + kExhaustedPause;
            }
            break;
          }
          Client& c = clients[cfd];
          c.fd.Reset(cfd);
          c.deadline = now + kClientDeadline;
          add(cfd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
        }
        // Full: the rest wait in the listen backlog until a slot frees.
        if (clients.size() >= kMaxClients) set_listening(false);
        continue;
      }
      auto it = clients.find(fd);
      if (it == clients.end()) continue;
      if (!handle(it->second)) clients.erase(it);  // closing leaves the epoll set
    }
    for (auto it = clients.begin(); it != clients.end();) {
      if (now >= it->second.deadline) {
        clients.erase(it++);
      } else {
        ++it;
      }
    }
    if (!listening && clients.size() < kMaxClients && now >= resume_at) set_listening(true);
  }
}

}  // namespace troupe
