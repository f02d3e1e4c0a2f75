// AdminEndpoint: runtime controls on the metrics port (after ranch's runtime
// API and HAProxy's runtime API), served by the MetricsServer
// (core/ops/metrics_server.h) for every path under /admin/:
//
//   GET  /admin/connections?top=N&by=output|mailbox
//        the N (default 10, at most 1000) connections with the most queued
//        output (or mail) across all reactors, as JSON (core/ops/top_connections.h).
//        Each reactor walks its own table on its own thread (a posted task,
//        O(connections) there: every connection visited once, each walk
//        stalling that reactor's loop meanwhile) and posts its part back
//        (up to N rows each, so up to reactors x N held); a reactor that has
//        not answered within `reply_deadline` makes it 503, never a hang.
//        One gather in flight per endpoint: a request while another is being
//        answered is 503 at once with "Retry-After: 1" (counted as
//        unavailable), so clients polling in parallel cannot pile walks onto
//        the reactors. The rows are released as soon as the answer is sent.
//   POST /admin/accept/pause    stop accepting (Server::PauseAccepting):
//   POST /admin/accept/resume   new connections wait in the listen backlog;
//        /healthz answers 503 "paused" and the agent check "drain" meanwhile,
//        so a balancer sends them elsewhere. 200 once every listener applied
//        it (503 if not within `reply_deadline`).
//   POST /admin/max-connections  body "N": the max-connections gate (0: none)
//   GET  /admin/max-connections  the current value
//   POST /admin/log-level        body "debug|info|warning|error|off"
//   GET  /admin/log-level        the current level
//
// Safety: off by default, and then every /admin/ path is 404, as if there
// were none. On, each request must pass the auth first (connections too: it
// reveals client addresses). In both modes a request with an `Origin`
// header, or a `Sec-Fetch-Site` other than `none`, is 403: browsers mark
// what a web page sends that way (a page may POST to 127.0.0.1 cross-origin
// without a preflight), and curl or scripts send neither.
//   kLoopback  the endpoint binds a loopback address (Create refuses any
//              other) and the peer must be one: only local users reach it.
//              A `Host` header, if any, must name loopback literally
//              (127.x.y.z, [::1] or localhost, optionally with :port),
//              else 403: a DNS-rebound name is some web page's.
//   kToken     "Authorization: Bearer <token>" must equal the token file's
//              content (trimmed), compared in constant time; no or another
//              scheme: 401, a wrong token: 403.
// POST requests need a Content-Length (411 without: curl -d ''); bodies are
// at most 1 KiB (413). Wrong method 405, bad body or query 400, unknown path
// 404. Every change is logged at info with the old and new value and the
// peer, and every request counted (troupe_admin_requests_total{action,result}
// on /metrics).
//
//   AdminOptions admin;
//   admin.auth = AdminAuth::kToken;
//   admin.token_file = "/etc/troupe/admin-token";
//   auto endpoint = AdminEndpoint::Create(admin, metrics_address, server);
//   // on the HTTP loop, for a complete request whose path starts with /admin/:
//   if (std::optional<std::string> now = (*endpoint)->Handle(request, conn)) conn.Send(*now);
//
// Thread safety: Create from the thread setting the server up; Handle and
// RenderPrometheus on the HTTP loop's thread only.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/loop/connection.h"
#include "core/net/address.h"
#include "core/ops/http_request.h"

namespace troupe {

class Server;

enum class AdminAuth { kOff, kLoopback, kToken };
// "off", "loopback", "token" -> the mode.
absl::StatusOr<AdminAuth> ParseAdminAuth(std::string_view name);

struct AdminOptions {
  AdminAuth auth = AdminAuth::kOff;
  // kToken: the file whose content (trimmed) is the bearer token. Read once,
  // at Create.
  std::string token_file;
  // How long an answer that needs other threads (the reactors' parts of
  // /admin/connections, a pause applied) may take before it is 503.
  absl::Duration reply_deadline = absl::Seconds(1);
};

// True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
bool IsLoopback(const Address& address);

class AdminEndpoint {
 public:
  // Checks the options against `bound` (the metrics address): loopback auth
  // on another address, a missing, unreadable or empty token file are
  // InvalidArgument naming the address or the file. `server` must outlive
  // the endpoint. Returns null when options.auth is kOff.
  static absl::StatusOr<std::unique_ptr<AdminEndpoint>> Create(const AdminOptions& options,
                                                               const Address& bound,
                                                               Server* server);

  // A complete request for a path under /admin/, on `conn`'s loop: the
  // response now, or nullopt when it comes later (then it is sent on `conn`,
  // found by id, followed by CloseAfterFlush).
  std::optional<std::string> Handle(const HttpRequest& request, Connection& conn);
  // Appends troupe_admin_requests_total.
  void RenderPrometheus(std::string& out) const;

  enum class Action { kConnections, kPause, kResume, kMaxConnections, kLogLevel, kUnknown, kCount };
  enum class Result { kOk, kDenied, kInvalid, kUnavailable, kCount };
  // A response made at once, with its status for the count.
  struct Reply {
    int code;
    std::string response;
  };

 private:
  AdminEndpoint(const AdminOptions& options, std::string token, Server* server);
  // nullopt: the answer comes later (a PendingReply, admin.cc).
  std::optional<Reply> Dispatch(Action action, const HttpRequest& request, Connection& conn);
  std::optional<Reply> ConnectionsRequest(const HttpRequest& request, Connection& conn);
  void PauseRequest(bool paused, Connection& conn);
  Reply MaxConnectionsRequest(const HttpRequest& request, const Connection& conn);
  Reply LogLevelRequest(const HttpRequest& request, const Connection& conn);
  void Count(Action action, int code);

  const AdminOptions options_;
  const std::string token_;  // kToken
  Server* const server_;
  // A /admin/connections gather is being answered (one at a time); the HTTP
  // loop's alone.
  bool gather_in_flight_ = false;
  // Requests by action and result; the HTTP loop's alone (it renders them too).
  std::array<std::array<uint64_t, static_cast<size_t>(Result::kCount)>,
             static_cast<size_t>(Action::kCount)>
      requests_{};
};

}  // namespace troupe
