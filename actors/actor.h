// Actor: the user's per-connection handler. Each connection gets its own
// actor, which runs on the connection's reactor one event at a time, so its
// members need no lock.
//
//   class CounterActor final : public troupe::Actor {
//    public:
//     void OnMessage(troupe::Context& ctx, troupe::Bytes line) override {
//       ctx.WriteFrame(absl::StrCat(++count_, " ", AsAbsl(line)));
//     }
//    private:
//     uint64_t count_ = 0;
//   };
//
//   troupe::ActorOptions actor_options;
//   actor_options.codec.kind = troupe::CodecKind::kLines;
//   auto server = troupe::Server::Create(server_options,
//       troupe::ActorFactory([] { return std::make_unique<CounterActor>(); },
//                            actor_options));
//
// What reaches an actor, always on its own reactor:
//   OnOpen     once, first
//   OnMessage  each message the codec cuts from the stream (raw: each read)
//   OnMail     mail from other actors or threads (Send, Broadcast, Offload
//              results are delivered as mail too), in per-sender order; it
//              waits in the actor's mailbox, a plain deque only the reactor
//              touches, until taken
//   OnClose    once, last; the connection is already closed
//
// An exception escaping a callback closes that connection with
// CloseReason::kHandlerError and is counted and logged; the reactor and its
// other connections go on. An input that breaks the codec's rules closes it
// with kProtocolError, likewise.
//
// Thread safety: loop-affine (owning reactor), except where marked.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "actors/codec.h"
#include "actors/offload_pool.h"
#include "core/connection.h"
#include "core/mail.h"
#include "core/reactor.h"

namespace troupe {

// Where to send mail to an actor: a small value (reactor, slot, generation)
// that any thread may copy and keep after the actor is gone. Mail to a gone
// actor is dropped and counted; it never reaches a newer connection that
// reuses the slot.
using ActorRef = ConnectionId;
// One message's bytes; valid only during the call that receives them.
using Bytes = std::string_view;

// What a group member receives (as Mail, via Mail::Get<GroupMessage>()).
struct GroupMessage {
  std::string group;
  ActorRef from;
  std::string text;
};

class Context;

namespace internal {
// Work to run on the actor's reactor with its Context: how timers and offload
// results come home. Delivered as mail, so it keeps the mailbox order and is
// dropped (and counted) if the actor is gone.
struct Continuation {
  absl::AnyInvocable<void(Context&) &&> run;
};
struct ActorShared;  // per-factory state: codec, offload pool
}  // namespace internal

// What an actor can do. Valid only inside a callback.
class Context {
 public:
  Context(Connection& conn, const internal::ActorShared& shared)
      : conn_(conn), shared_(shared) {}

  // Sends raw bytes to the peer (what the kernel does not take is queued).
  void Write(Bytes bytes) { conn_.Send(bytes); }
  // Sends one message framed by the server's codec (raw: same as Write).
  void WriteFrame(Bytes payload);
  // Closes at once; unsent output is dropped.
  void Close() { conn_.Close(CloseReason::kLocalClose); }
  // Sends what is queued, then closes (DESIGN.md invariant 7).
  void CloseAfterFlush() { conn_.CloseAfterFlush(); }

  ActorRef Self() const { return conn_.id(); }
  const Address& peer() const { return conn_.peer(); }
  uint32_t reactor_index() const { return conn_.id().reactor; }
  size_t pending_output() const { return conn_.pending_output(); }
  Connection& connection() { return conn_; }

  // Mail to any actor on any reactor of this server.
  void Send(ActorRef to, Mail mail);

  // Runs `fn` on this actor after `delay`, unless the actor is gone by then.
  void After(absl::Duration delay, absl::AnyInvocable<void(Context&) &&> fn);

  // Runs `work` on the offload pool; then `on_done(ctx, result)` runs on this
  // actor's reactor (dropped if the actor has closed meanwhile). `work` must
  // not touch the actor: it runs on another thread. An exception from `work`
  // closes the connection with kHandlerError.
  template <typename Work, typename Done>
  void Offload(Work work, Done on_done);

  // Groups: membership is kept per reactor and broadcasts fan out to every
  // reactor, so no lock is shared across reactors. An actor leaves every
  // group when it closes.
  void Join(std::string_view group);
  void Leave(std::string_view group);
  // Delivers GroupMessage{group, Self(), text} as mail to every member of
  // `group` on every reactor (this actor too when `include_self`).
  void Broadcast(std::string_view group, std::string text, bool include_self = false);

 private:
  void SubmitOffload(OffloadPool::Job job);

  Connection& conn_;
  const internal::ActorShared& shared_;
};

class Actor {
 public:
  virtual ~Actor() = default;
  virtual void OnOpen(Context& /*ctx*/) {}
  virtual void OnMessage(Context& ctx, Bytes message) = 0;
  virtual void OnMail(Context& /*ctx*/, Mail /*mail*/) {}
  // The peer finished sending (half-close). The default flushes and closes;
  // override to keep the connection until pending work (Offload) replies.
  virtual void OnPeerClosed(Context& ctx) { ctx.CloseAfterFlush(); }
  virtual void OnClose(Context& /*ctx*/, CloseReason /*reason*/) {}
};

struct ActorOptions {
  CodecOptions codec;
  // Where Context::Offload runs work; nullptr: OffloadPool::Default().
  OffloadPool* offload = nullptr;
};

// Adapts a factory of actors to the core's HandlerFactory. `make` runs on
// reactor threads concurrently: it must be thread-safe.
HandlerFactory ActorFactory(std::function<std::unique_ptr<Actor>()> make,
                            const ActorOptions& options = {});

// From a thread outside any actor, send with Server::SendMail(ref, mail).

namespace internal {
struct ActorShared {
  Codec codec;
  OffloadPool* offload;
};
}  // namespace internal

template <typename Work, typename Done>
void Context::Offload(Work work, Done on_done) {
  using Result = std::invoke_result_t<Work&>;
  // A weak handle: the server (and this reactor) may be gone by the time
  // the work finishes; then the result is dropped.
  std::weak_ptr<Inbox> home = conn_.reactor().inbox();
  const ActorRef self = Self();
  SubmitOffload([work = std::move(work), on_done = std::move(on_done), home = std::move(home),
                 self]() mutable {
    internal::Continuation next;
    try {
      if constexpr (std::is_void_v<Result>) {
        work();
        next.run = [on_done = std::move(on_done)](Context& ctx) mutable {
          on_done(ctx);
        };
      } else {
        next.run = [on_done = std::move(on_done),
                    result = work()](Context& ctx) mutable {
          on_done(ctx, std::move(result));
        };
      }
    } catch (...) {
      next.run = [](Context& ctx) {
        ctx.connection().Close(CloseReason::kHandlerError);
      };
    }
    if (std::shared_ptr<Inbox> inbox = home.lock()) {
      inbox->SendMail(self, Mail::Of(std::move(next)));
    }
  });
}

}  // namespace troupe
