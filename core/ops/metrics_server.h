// MetricsServer: a small HTTP/1.1 endpoint on its own thread that serves
// a Server's counters in the Prometheus text format.
//
//   GET /metrics   200, text/plain; version=0.0.4
//   GET /healthz   200 "ok" while the server accepts, 503 "draining" after
//   anything else  404 (unknown path), 405 (not GET/HEAD), 400 (malformed),
//                  431 (request head over 8 KiB); every response closes
//
//   auto metrics = MetricsServer::Create(*Address::Parse("127.0.0.1:9100"), server.get());
//   (*metrics)->Start();
//   ...
//   (*metrics)->Stop();
//
// It runs on a Reactor of its own (core/loop/reactor.h), one connection per
// scrape, and never touches the server's reactors: it reads only
// Server::Stats(), built from counters the reactors publish as relaxed
// atomics. 64 scrapes at once; more wait in the listen backlog.
//
// Thread safety: Start/Stop from one controlling thread; RenderPrometheus is
// a pure function.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "core/base/fd.h"
#include "core/loop/reactor.h"
#include "core/net/address.h"
#include "core/server.h"

namespace troupe {

// The /metrics body for `stats`.
std::string RenderPrometheus(const ServerStats& stats, bool accepting);

class MetricsServer {
 public:
  // Binds `address` (errors name it). `server` must outlive this object.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Create(const Address& address,
                                                               const Server* server);
  ~MetricsServer();

  void Start();
  void Stop();
  const Address& address() const { return address_; }

 private:
  MetricsServer(std::unique_ptr<Reactor> loop, Address address);

  std::unique_ptr<Reactor> loop_;  // owns the listener and the scrapes
  const Address address_;
  std::thread thread_;
};

}  // namespace troupe
