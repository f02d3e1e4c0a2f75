// MetricsServer: a small HTTP/1.1 endpoint on its own thread that serves
// a Server's counters in the Prometheus text format.
//
//   GET /metrics   200, text/plain; version=0.0.4
//   GET /healthz   200 "ok" while the server serves (Server::serving()), 503
//                  "draining" from the moment Stop() begins (before it stops
//                  accepting: ServerOptions::drain_grace)
//                  or "paused" while accepting is paused (Server::PauseAccepting)
//   /admin/...     runtime controls, off unless MetricsServerOptions::admin
//                  says how to authenticate them (core/ops/admin.h)
//   anything else  404 (unknown path), 405 (not GET/HEAD), 400 (malformed),
//                  431 (request head over 8 KiB), 413 (body over 1 KiB),
//                  411 (chunked body); every response closes
//
// With MetricsServerOptions::agent_address it also answers HAProxy's
// agent-check (`agent-check agent-port N` on a server line): one line per
// connection, then close:
//   "up ready 73%\n"  while serving; the weight follows the reactors' measured
//                     load since the previous check (100% idle .. 1% saturated)
//   "drain\n"         from the moment Stop() begins, and while accepting is
//                     paused: HAProxy sends no new connections and leaves
//                     the open ones be
//
//   auto metrics = MetricsServer::Create(*Address::Parse("127.0.0.1:9100"), server.get());
//   (*metrics)->Start();
//   ...
//   (*metrics)->Stop();
//
// It runs on a Reactor of its own (core/loop/reactor.h; the agent check on
// a second one), one connection per scrape. Scrapes never touch the server's
// reactors: they read only Server::Stats(), built from counters the reactors
// publish as relaxed atomics; only the admin endpoints post tasks to them.
// 64 clients at once; more wait in the listen backlog.
//
// Thread safety: Start/Stop from one controlling thread; RenderPrometheus is
// a pure function.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/fd.h"
#include "core/loop/reactor.h"
#include "core/net/address.h"
#include "core/ops/admin.h"
#include "core/server.h"

namespace troupe {

// The /metrics body for `stats`.
std::string RenderPrometheus(const ServerStats& stats, bool accepting);

// The agent-check weight for a busy fraction (0 idle .. 1 saturated).
int AgentWeightPercent(double busy);

struct MetricsServerOptions {
  // More families appended to /metrics, e.g. a GroupBus's
  // (actors/bus.h). Runs on the metrics thread.
  std::function<std::string()> extra;
  // Also listen here for HAProxy's agent-check (above).
  std::optional<Address> agent_address;
  // The runtime controls under /admin/ (core/ops/admin.h): off by default.
  AdminOptions admin;
};

class MetricsServer {
 public:
  // Binds `address` (and the agent address; errors name it). `server` must
  // outlive this object; it is changed only through the admin endpoints.
  // Admin options that do not fit `address` are an error (AdminEndpoint::Create).
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Create(const Address& address,
                                                               Server* server,
                                                               MetricsServerOptions options = {});
  ~MetricsServer();

  void Start();
  void Stop();
  const Address& address() const { return address_; }
  // The agent-check address (with the real port), if one was asked for.
  const std::optional<Address>& agent_address() const { return agent_address_; }

 private:
  MetricsServer(std::vector<std::unique_ptr<Reactor>> loops, Address address,
                std::optional<Address> agent_address, std::shared_ptr<void> shared);

  // HTTP, then the agent check's if any; each owns its listener.
  std::vector<std::unique_ptr<Reactor>> loops_;
  const Address address_;
  const std::optional<Address> agent_address_;
  std::shared_ptr<void> shared_;  // what the handlers share (metrics_server.cc)
  std::vector<std::thread> threads_;
};

}  // namespace troupe
