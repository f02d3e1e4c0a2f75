// Actor: the user's per-connection handler. Each connection gets its own
// actor, which runs on the connection's reactor one event at a time, so its
// members need no lock. Actors with no socket (state that lives on a
// reactor, sharded or not) are service actors: actors/service.h. Both kinds
// get the same Context and the same kind of ActorRef, so Send, Ask and
// Watch work alike to either.
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
//   order    Offload results and Ask replies reach the actor in the order
//            it asked for them, so replies to pipelined requests keep
//            request order.
//   drain    Offload, Ask and ReplyAfter count as work owed to the peer: the
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
// Ask / reply (Erlang's gen_server:call, Akka's ask):
//
//   ctx.Ask<Count>(counter, Increment{}, absl::Seconds(1),
//                  [](Context& c, absl::StatusOr<Count> n) { ... });
//   // the asked actor, in OnMail:
//   if (mail.Is<Increment>()) ctx.Reply(mail.return_address(), Count{++n_});
//
// on_reply runs on the asker's reactor, exactly once: with the reply; with
// DeadlineExceeded at the timeout; NotFound when the target is gone;
// ResourceExhausted when its mailbox or inbox refused the request; Internal
// when its handler threw before answering. A reply after the timeout is
// dropped and counted (troupe_ask_replies_late_total).
//
// Watches (Erlang monitors): ctx.Watch(ref) and, when that actor ends, this
// one gets Terminated{ref, reason} as mail (at once, reason empty, if it had
// already ended).
//
// Thread safety: loop-affine (owning reactor), except where marked.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "actors/codec.h"
#include "actors/offload_pool.h"
#include "core/loop/connection.h"
#include "core/loop/mail.h"
#include "core/loop/reactor.h"

namespace troupe {

// ActorRef: the address of an actor, of either kind. It is the id of the
// table entry that runs the actor (reactor, slot, generation; core/loop/
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

// What a watcher receives (as Mail) when an actor it watches ends.
struct Terminated {
  ActorRef ref;
  // Why it ended; empty when it had already ended (or never was) by the time
  // the watch reached it.
  std::optional<CloseReason> reason;
};

class Actor;
class Context;
class ServiceActor;
struct ServiceActorOptions;

// How Context::Connect dials out.
struct ConnectOptions {
  // No connection within this: on_connected gets DeadlineExceeded. Zero or
  // infinite: the kernel's own limit (minutes).
  absl::Duration timeout = absl::Seconds(10);
  CodecOptions codec;  // the new actor's framing (raw by default)
  // Where the new actor's Offload runs; nullptr: OffloadPool::Default().
  OffloadPool* offload = nullptr;
};

namespace internal {
// Work to run on the actor's reactor with its Context: how timers, offload
// results and Ask replies come home. Delivered as system mail (never refused
// by a capacity), so it keeps the mailbox order and is dropped (and counted)
// if the actor is gone.
struct Continuation {
  absl::AnyInvocable<void(Context&) &&> run;
  uint64_t seq = 0;          // > 0: an ordered result (Offload, Ask), run in this order
  bool holds_work = false;   // counted as pending work until it has run
  uint32_t incarnation = 0;  // of a restarted service: older ones are dropped
};
class ActorCell;  // actors/cell.h
}  // namespace internal

// What an actor can do. Valid only inside a callback.
class Context {
 public:
  explicit Context(internal::ActorCell& cell) : cell_(cell) {}

  // --- Connection actors only. A service actor has no peer: calling these
  // on one is a programming error (CHECK). ---

  // Sends raw bytes to the peer (what the kernel does not take is queued).
  void Write(Bytes bytes) { Conn().Send(bytes); }
  // Sends one message framed by the server's codec (raw: same as Write).
  void WriteFrame(Bytes payload);
  // Like WriteFrame, unless the peer is behind (peer_behind()): then the
  // frame is dropped, counted (troupe_frames_shed_total), and false returned.
  // For output that may be shed, such as chat lines to a member not reading.
  bool TryWriteFrame(Bytes payload);
  // Once the work this actor owes has replied, sends what is queued, then
  // closes (docs/architecture.md, "Closing"). No further messages arrive.
  void CloseAfterFlush() { Conn().CloseAfterFlush(); }
  const Address& peer() const { return Conn().peer(); }
  size_t pending_output() const { return Conn().pending_output(); }
  // True while the peer is not keeping up: output queued above the high
  // watermark. Output beyond max_output_bytes would close the connection.
  bool peer_behind() const { return Conn().behind(); }
  // Stops reading from the peer until ResumeReading() (what the peer sends
  // then waits in the kernel and, once that fills, blocks the peer): for an
  // actor whose output goes somewhere slower (a proxy's other side, a disk).
  // Frames already read but not yet handed over wait too.
  void PauseReading() { Conn().PauseReading(); }
  void ResumeReading() { Conn().ResumeReading(); }
  bool reading_paused() const { return Conn().reading_paused(); }
  // Half-close: FIN once the queued output is out, while reading goes on
  // (Connection::ShutdownWrite). Writes after it are ignored.
  void ShutdownWrite() { Conn().ShutdownWrite(); }

  // --- Every actor. ---

  // Ends this actor: a connection closes at once (unsent output is
  // dropped); a service stops (OnStop runs at the end of the turn). Either
  // way watchers get Terminated.
  void Close();
  ActorRef Self() const;
  bool is_service() const;
  uint32_t reactor_index() const { return Self().reactor; }
  // Reactors of this server, numbered 0..reactor_count()-1 (Sharded).
  uint32_t reactor_count() const;
  // True once the actor is ending (a connection closing by CloseAfterFlush
  // or the drain, a service stopped): a periodic timer should stop
  // re-arming itself.
  bool closing() const;

  // Mail to any actor on any reactor of this server. True when the mail was
  // taken: queued in the target's mailbox (same reactor) or in its reactor's
  // inbox (another reactor; it may still be dropped there, counted, if the
  // target is gone or its mailbox is full). False, counted, for a ref that
  // names no actor, a gone actor on this reactor, or a full mailbox/inbox.
  bool Send(ActorRef to, Mail mail);

  // Asks `to` (see the header comment): sends `request` with this actor's
  // return address; `on_reply(ctx, absl::StatusOr<Reply>)` runs here once,
  // in ask order with this actor's other asks and offloads. Counted as
  // pending work (the drain waits for the answer). A zero or infinite
  // timeout means none: the answer is awaited as long as the target lives
  // (a request it keeps to answer later is lost if it restarts or ends
  // first, so prefer a finite timeout).
  template <typename Reply, typename Request, typename OnReply>
  void Ask(ActorRef to, Request request, absl::Duration timeout, OnReply on_reply);
  // Ask with the request and reply as Mail (any type; the reply unchecked).
  void AskMail(ActorRef to, Mail request, absl::Duration timeout,
               absl::AnyInvocable<void(Context&, absl::StatusOr<Mail>) &&> on_reply);
  // Runs `fn` on this actor in the result order: after the replies of every
  // Ask and Offload made before it (in this turn's mailbox phase if none is
  // waiting). For a pipelined protocol's answer that needs no asynchronous
  // work (a parse error) but must not overtake earlier answers.
  void InOrder(absl::AnyInvocable<void(Context&) &&> fn);

  // Answers the request whose return address is `to` (mail.return_address(),
  // kept to answer later if need be). False if there is nobody to answer (no
  // return address, the asker gone on this reactor). Each request is
  // answered once; a second answer arrives late and is dropped. The reply
  // arrives without a return address of its own (it travels in that field).
  template <typename T>
  bool Reply(ReturnAddress to, T value) {
    return ReplyMail(to, Mail::Of(std::move(value)));
  }
  bool ReplyMail(ReturnAddress to, Mail reply);
  // Answers with an error: the asker's on_reply gets `error`.
  bool ReplyError(ReturnAddress to, absl::Status error);

  // Watches `ref`: when it ends, this actor gets Terminated{ref, reason} as
  // mail, once. Unwatch stops that (a Terminated already sent is dropped).
  void Watch(ActorRef ref);
  void Unwatch(ActorRef ref);

  // Opens a TCP connection to `to` from this actor's reactor (non-blocking;
  // never throws), served once open by `actor` exactly like an accepted
  // connection: same buffers, watermarks, limits and mailbox, and its ref
  // is of the same kind. `on_connected(ctx, StatusOr<ActorRef>)` runs here,
  // once: with the new actor's ref (its OnOpen has run or is about to), or
  // with why it never opened (the errno text, naming `to`; DeadlineExceeded
  // at the timeout; Cancelled while the server stops). An actor whose
  // connection never opened gets no callback at all. Counted as pending
  // work, so the drain waits for the outcome.
  void Connect(const Address& to, std::unique_ptr<Actor> actor, const ConnectOptions& options,
               absl::AnyInvocable<void(Context&, absl::StatusOr<ActorRef>) &&> on_connected);

  // Spawns a service actor on this reactor (actors/service.h) and returns
  // its ref; its OnStart runs in this turn's mailbox phase.
  ActorRef Spawn(std::function<std::unique_ptr<ServiceActor>()> make,
                 const ServiceActorOptions& options);
  ActorRef Spawn(std::function<std::unique_ptr<ServiceActor>()> make);
  // Spawns a service actor on reactor `reactor` (any of this server's, this
  // one too); `on_spawned(ctx, ref)` runs back here once it exists. Pending
  // work until then. std::out_of_range past reactor_count().
  void SpawnOn(uint32_t reactor, std::function<std::unique_ptr<ServiceActor>()> make,
               const ServiceActorOptions& options,
               absl::AnyInvocable<void(Context&, ActorRef) &&> on_spawned);

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
  // runs on another thread. An exception from `work` fails the actor (a
  // connection closes with kHandlerError; a service meets its restart policy).
  template <typename Work, typename Done>
  void Offload(Work work, Done on_done);

  // Work owed to the peer that the library cannot see (a reply awaited by
  // mail): while any is pending, CloseAfterFlush() and the drain wait. Every
  // Add needs one Finish; the drain deadline bounds a Finish that never comes.
  void AddPendingWork();
  void FinishPendingWork();

  // Groups: membership is kept per reactor and broadcasts fan out to every
  // reactor, so no lock is shared across reactors. An actor leaves every
  // group when it ends.
  void Join(std::string_view group);
  void Leave(std::string_view group);
  // Delivers GroupMessage{group, Self(), text} as mail to every member of
  // `group` on every reactor (this actor too when `include_self`); one
  // shared immutable message, not a copy per member.
  void Broadcast(std::string_view group, std::string text, bool include_self = false);

 private:
  Connection& Conn() const;
  // Counts the work as pending and returns its place in the result order.
  uint64_t BeginOffload();
  uint32_t Incarnation() const;
  void Schedule(absl::Duration delay, absl::AnyInvocable<void(Context&) &&> fn, bool owed);
  void SubmitOffload(OffloadPool::Job job);
  std::weak_ptr<Inbox> HomeInbox() const;
  // An exception escaped asynchronous work: the actor pays.
  void Fail();

  internal::ActorCell& cell_;
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

template <typename Reply, typename Request, typename OnReply>
void Context::Ask(ActorRef to, Request request, absl::Duration timeout, OnReply on_reply) {
  AskMail(to, Mail::Of(std::move(request)), timeout,
          [on_reply = std::move(on_reply)](Context& ctx, absl::StatusOr<Mail> reply) mutable {
            if (!reply.ok()) {
              on_reply(ctx, absl::StatusOr<Reply>(reply.status()));
            } else if (Reply* value = reply->As<Reply>()) {
              on_reply(ctx, absl::StatusOr<Reply>(std::move(*value)));
            } else {
              on_reply(ctx, absl::StatusOr<Reply>(absl::InternalError(
                                "the reply is not of the type the asker expects")));
            }
          });
}

template <typename Work, typename Done>
void Context::Offload(Work work, Done on_done) {
  using Result = std::invoke_result_t<Work&>;
  // A weak handle: the server (and this reactor) may be gone by the time
  // the work finishes; then the result is dropped.
  std::weak_ptr<Inbox> home = HomeInbox();
  const ActorRef self = Self();
  const uint32_t incarnation = Incarnation();
  const uint64_t seq = BeginOffload();
  SubmitOffload([work = std::move(work), on_done = std::move(on_done), home = std::move(home), self,
                 seq, incarnation]() mutable {
    internal::Continuation next;
    next.seq = seq;
    next.holds_work = true;
    next.incarnation = incarnation;
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
      next.run = [](Context& ctx) { ctx.Fail(); };
    }
    if (std::shared_ptr<Inbox> inbox = home.lock()) {
      inbox->SendMail(self, Mail::Of(std::move(next)), MailClass::kSystem);
    }
  });
}

}  // namespace troupe
