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
//              waits in the actor's mailbox (core/loop/mailbox.h: bounded, with an
//              overflow policy) until the reactor's mailbox phase hands it
//              over, never inside the sender's callback
//   OnClose    once, last; the connection is already closed
//
// Limits every actor lives under (ConnectionOptions, ServerOptions):
//   output   reading pauses above the high watermark; a write that would
//            queue more than max_output_bytes closes the connection
//            (kSlowConsumer). peer_behind() / TryWriteFrame() let an actor
//            shed instead (chat drops lines for a member that is behind).
//   mailbox  mailbox_capacity user mails wait at most; beyond that the
//            policy drops the newest (default), the oldest, or closes the
//            actor (kMailboxOverflow). Send() says whether mail was taken.
//   inbox    a reactor takes at most inbox_mail_capacity user mails from
//            other threads at a time; Send() to it is refused beyond that.
//   order    Offload results reach the actor in submission order, so
//            replies to pipelined requests keep request order.
//   drain    Offload and ReplyAfter count as work owed to the peer: the
//            server's drain, and CloseAfterFlush(), wait for it (bounded by
//            flush_timeout and the drain deadline). Replies awaited by
//            mail: AddPendingWork() / FinishPendingWork(). At
//            max_pending_work owed replies no further request is taken
//            until one is out.
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
#include "core/loop/connection.h"
#include "core/loop/mail.h"
#include "core/loop/reactor.h"

namespace troupe {

// ActorRef: the address of an actor. It is the ConnectionId of the table
// entry that runs the actor (reactor, slot, generation; core/loop/
// connection_id.h): a small value any thread may copy and keep after the
// actor is gone. Mail to a gone actor is dropped and counted; it never
// reaches a newer actor that reuses the slot.
using ActorRef = ConnectionId;
// Bytes: one message's bytes, a view into the connection's input (or the
// reactor's read buffer), valid only during the call that receives them;
// copy what must outlive it.
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
// results come home. Delivered as system mail (never refused by a capacity),
// so it keeps the mailbox order and is dropped (and counted) if the actor is
// gone.
struct Continuation {
  absl::AnyInvocable<void(Context&) &&> run;
  uint64_t offload_seq = 0;  // > 0: an Offload result, run in this order
  bool holds_work = false;   // counted as pending work until it has run
};
struct ActorShared;  // per-factory state: codec, offload pool
class ActorHost;     // the ConnectionHandler that runs one Actor (actor.cc)
}  // namespace internal

// What an actor can do. Valid only inside a callback.
class Context {
 public:
  Context(Connection& conn, internal::ActorHost& host);

  // Sends raw bytes to the peer (what the kernel does not take is queued).
  void Write(Bytes bytes) { conn_.Send(bytes); }
  // Sends one message framed by the server's codec (raw: same as Write).
  void WriteFrame(Bytes payload);
  // Like WriteFrame, unless the peer is behind (peer_behind()): then the
  // frame is dropped, counted (troupe_frames_shed_total), and false returned.
  // For output that may be shed, such as chat lines to a member not reading.
  bool TryWriteFrame(Bytes payload);
  // Closes at once; unsent output is dropped.
  void Close() { conn_.Close(CloseReason::kLocalClose); }
  // Once the work this actor owes has replied, sends what is queued, then
  // closes (docs/architecture.md, "Closing"). No further messages arrive.
  void CloseAfterFlush() { conn_.CloseAfterFlush(); }

  ActorRef Self() const { return conn_.id(); }
  const Address& peer() const { return conn_.peer(); }
  uint32_t reactor_index() const { return conn_.id().reactor; }
  size_t pending_output() const { return conn_.pending_output(); }
  // True while the peer is not keeping up: output queued above the high
  // watermark. Output beyond max_output_bytes would close the connection.
  bool peer_behind() const { return conn_.behind(); }
  // Stops reading from the peer until ResumeReading() (what the peer sends
  // then waits in the kernel and, once that fills, blocks the peer): for an
  // actor whose output goes somewhere slower (a proxy's other side, a disk).
  // Frames already read but not yet handed over wait too.
  void PauseReading() { conn_.PauseReading(); }
  void ResumeReading() { conn_.ResumeReading(); }
  bool reading_paused() const { return conn_.reading_paused(); }
  // True once the connection is closing (CloseAfterFlush, the server's
  // drain): a periodic timer should stop re-arming itself.
  bool closing() const { return conn_.closing(); }
  // Reactors of this server; shards of AtShard are numbered 0..reactor_count()-1.
  uint32_t reactor_count() const { return static_cast<uint32_t>(conn_.reactor().peer_count()); }

  // Mail to any actor on any reactor of this server. True when the mail was
  // taken: queued in the target's mailbox (same reactor) or in its reactor's
  // inbox (another reactor; it may still be dropped there, counted, if the
  // target is gone or its mailbox is full). False, counted, for a ref that
  // names no actor, a gone actor on this reactor, or a full mailbox/inbox.
  bool Send(ActorRef to, Mail mail);

  // Runs `fn` on this actor after `delay`, unless the actor is gone by then.
  // A plain timer (a heartbeat, a retry): closing does not wait for it.
  void After(absl::Duration delay, absl::AnyInvocable<void(Context&) &&> fn);
  // Like After, for a timer whose callback writes a reply the peer is owed
  // (a delayed answer): it counts as pending work until it has run, so
  // CloseAfterFlush() and the server's drain wait for it.
  void ReplyAfter(absl::Duration delay, absl::AnyInvocable<void(Context&) &&> fn);

  // Runs `work` on the offload pool; then `on_done(ctx, result)` runs on this
  // actor's reactor (dropped if the actor has closed meanwhile). Results run
  // in the order the work was submitted, whichever finishes first, and a
  // closing connection waits for them. `work` must not touch the actor: it
  // runs on another thread. An exception from `work` closes the connection
  // with kHandlerError.
  template <typename Work, typename Done>
  void Offload(Work work, Done on_done);

  // Sharded state without locks: runs `fn(shard)` on reactor `reactor`,
  // where `shard` is that reactor's one instance of Shard (default-
  // constructed on first use, touched only by that reactor's thread), then
  // `on_done(ctx, result)` runs back on this actor. Counted as pending work
  // until on_done has run (so the drain waits for the answer); dropped,
  // counted, if this actor has gone meanwhile. An exception from `fn`
  // closes this actor's connection with kHandlerError. A key-value store puts each
  // key on reactor hash(key) % reactor_count().
  template <typename Shard, typename Fn, typename Done>
  void AtShard(uint32_t reactor, Fn fn, Done on_done);

  // Work owed to the peer that the library cannot see (a reply awaited by
  // mail): while any is pending, CloseAfterFlush() and the drain wait. Every
  // Add needs one Finish; the drain deadline bounds a Finish that never comes.
  void AddPendingWork() { conn_.AddPendingWork(); }
  void FinishPendingWork() { conn_.FinishPendingWork(); }

  // Groups: membership is kept per reactor and broadcasts fan out to every
  // reactor, so no lock is shared across reactors. An actor leaves every
  // group when it closes.
  void Join(std::string_view group);
  void Leave(std::string_view group);
  // Delivers GroupMessage{group, Self(), text} as mail to every member of
  // `group` on every reactor (this actor too when `include_self`); one
  // shared immutable message, not a copy per member.
  void Broadcast(std::string_view group, std::string text, bool include_self = false);

 private:
  // Counts the work as pending and returns its place in the result order.
  uint64_t BeginOffload();
  void Schedule(absl::Duration delay, absl::AnyInvocable<void(Context&) &&> fn, bool owed);
  void SubmitOffload(OffloadPool::Job job);
  // An exception escaped asynchronous work: the connection pays.
  void FailWithHandlerError() { conn_.Close(CloseReason::kHandlerError); }

  Connection& conn_;
  internal::ActorHost& host_;
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
  // The peer caught up: output queued above the high watermark (peer_behind())
  // drained to the low watermark. An actor that held back output may go on.
  virtual void OnOutputDrained(Context& /*ctx*/) {}
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
  const uint64_t seq = BeginOffload();
  SubmitOffload([work = std::move(work), on_done = std::move(on_done), home = std::move(home), self,
                 seq]() mutable {
    internal::Continuation next;
    next.offload_seq = seq;
    next.holds_work = true;
    try {
      if constexpr (std::is_void_v<Result>) {
        work();
        next.run = [on_done = std::move(on_done)](Context& ctx) mutable { on_done(ctx); };
      } else {
        next.run = [on_done = std::move(on_done), result = work()](Context& ctx) mutable {
          on_done(ctx, std::move(result));
        };
      }
    } catch (...) {
      next.run = [](Context& ctx) { ctx.FailWithHandlerError(); };
    }
    if (std::shared_ptr<Inbox> inbox = home.lock()) {
      inbox->SendMail(self, Mail::Of(std::move(next)), MailClass::kSystem);
    }
  });
}

template <typename Shard, typename Fn, typename Done>
void Context::AtShard(uint32_t reactor, Fn fn, Done on_done) {
  Reactor& here = conn_.reactor();
  Reactor& home = here.peer(reactor);  // std::out_of_range past reactor_count()
  conn_.AddPendingWork();
  // Both reactors outlive every task they run: the server joins them all.
  home.Post(
      [&home, &here, self = Self(), fn = std::move(fn), on_done = std::move(on_done)]() mutable {
        internal::Continuation next;
        next.holds_work = true;
        try {
          next.run = [on_done = std::move(on_done), result = fn(home.Local<Shard>())](
                         Context& ctx) mutable { on_done(ctx, std::move(result)); };
        } catch (...) {
          // As with Offload: the asking connection pays, not the home reactor.
          next.run = [](Context& ctx) { ctx.FailWithHandlerError(); };
        }
        // System mail: an answer this actor asked for is never refused by a
        // full mailbox or inbox.
        here.SendMail(self, Mail::Of(std::move(next)), MailClass::kSystem);
      });
}

}  // namespace troupe
