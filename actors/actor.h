// Actor: the user's per-connection handler. Each connection gets its own
// actor, which runs on the connection's reactor one event at a time, so its
// members need no lock.
//
//   class CounterActor final : public troupe::Actor {
//    public:
//     void OnMessage(troupe::Context& ctx, std::string_view bytes) override {
//       count_ += bytes.size();
//       ctx.Write(bytes);
//     }
//    private:
//     uint64_t count_ = 0;
//   };
//   auto server = troupe::Server::Create(options,
//       troupe::ActorFactory([] { return std::make_unique<CounterActor>(); }));
//
// Mail from other threads and actors arrives through the reactor's inbox and
// waits in the actor's mailbox (a plain deque only the reactor touches) until
// OnMail takes it.
//
// An exception escaping a callback closes that connection with
// CloseReason::kHandlerError; the reactor and its other connections go on.
//
// Thread safety: loop-affine (owning reactor).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string_view>

#include "core/connection.h"
#include "core/mail.h"
#include "core/reactor.h"

namespace troupe {

// Where to send mail to an actor: a small value that any thread may copy and
// keep after the actor is gone (mail to a gone actor is dropped and counted).
using ActorRef = ConnectionId;

// What an actor can do to its connection. Valid only inside a callback.
class Context {
 public:
  explicit Context(Connection& conn) : conn_(conn) {}

  // Sends bytes to the peer (queued beyond what the kernel takes at once).
  void Write(std::string_view bytes) { conn_.Send(bytes); }
  // Closes at once; unsent output is dropped.
  void Close() { conn_.Close(CloseReason::kLocalClose); }
  // Sends what is queued, then closes (DESIGN.md invariant 7).
  void CloseAfterFlush() { conn_.CloseAfterFlush(); }

  ActorRef Self() const { return conn_.id(); }
  const Address& peer() const { return conn_.peer(); }
  uint32_t reactor_index() const { return conn_.id().reactor; }
  size_t pending_output() const { return conn_.pending_output(); }
  Connection& connection() { return conn_; }

 private:
  Connection& conn_;
};

class Actor {
 public:
  virtual ~Actor() = default;
  virtual void OnOpen(Context& /*ctx*/) {}
  // Bytes from the peer, in order, as they arrive (raw: no framing).
  virtual void OnMessage(Context& ctx, std::string_view bytes) = 0;
  virtual void OnMail(Context& /*ctx*/, Mail /*mail*/) {}
  // The last call: the connection is already closed.
  virtual void OnClose(Context& /*ctx*/, CloseReason /*reason*/) {}
};

// Adapts a factory of actors to the core's per-connection HandlerFactory.
// `make` is called on reactor threads concurrently: it must be thread-safe.
HandlerFactory ActorFactory(std::function<std::unique_ptr<Actor>()> make);

// The built-in actor behind `echo-cluster --mode echo`: writes back every byte.
class EchoActor final : public Actor {
 public:
  void OnMessage(Context& ctx, std::string_view bytes) override { ctx.Write(bytes); }
};

}  // namespace troupe
