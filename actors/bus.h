// GroupBus: carries group broadcasts to the other nodes of a cluster, so that
// Context::Join / Broadcast (actors/actor.h) reach members on every node, not
// only on every reactor of this one. The bus is the transport; the members
// stay where they are (each reactor's own table), as within one node.
//
//   auto bus = RedisBus::Create(*ParseRedisUrl("redis://127.0.0.1:6379"));  // actors/redis_bus.h
//   AttachBus(*server, *bus);   // before server->Start()
//   server->Start();
//   ...
//   server->Stop();
//   (*bus)->Stop();             // before the server is destroyed
//
// What a node sees:
//   - a Broadcast goes to this node's members at once (as without a bus) and
//     is handed to the bus for the others; it never comes back to this node
//     (a bus drops what it published itself);
//   - a broadcast from another node reaches this node's members as a
//     GroupMessage whose `from` is invalid (the sender lives elsewhere);
//   - when the transport is down, local delivery goes on; what could not be
//     sent or delivered across nodes is counted by the bus, never hidden.
//
// Thread safety: Publish from any thread (reactors call it); it never blocks.
// The bus calls `deliver` from a thread of its own.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace troupe {

class Server;

class GroupBus {
 public:
  // Hands one broadcast received from another node to this node's members;
  // false when some reactor refused it (its inbox was full: counted there
  // too, as inbox_full).
  using Deliver = std::function<bool(std::string_view group, std::string_view text)>;

  virtual ~GroupBus() = default;
  // Begins carrying; called once, by AttachBus.
  virtual void Start(Deliver deliver) = 0;
  // Ends carrying and joins the bus's threads. Idempotent.
  virtual void Stop() = 0;
  // Any thread, never blocks: one broadcast for the other nodes.
  virtual void Publish(std::string_view group, std::string_view text) = 0;
  // The bus's counters in the Prometheus text format, appended to /metrics
  // (MetricsServer's extra families). Any thread.
  virtual std::string RenderPrometheus() const { return {}; }
};

// Every Broadcast by an actor of `server` is also published on `bus`, and
// what `bus` receives is delivered to the members on every reactor of
// `server`. Call before server.Start(); starts the bus. `bus` must outlive
// the server's reactors: Stop it after server.Stop(), before destroying the
// server.
void AttachBus(Server& server, GroupBus& bus);

}  // namespace troupe
