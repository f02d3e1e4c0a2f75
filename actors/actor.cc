#include "actors/actor.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actors/cell.h"
#include "core/base/check.h"
#include "core/base/log.h"

namespace troupe {
namespace internal {
namespace {

struct ActorShared {  // per factory: what every connection actor of it shares
  Codec codec;
  OffloadPool* offload;
};

// The ConnectionHandler that runs one connection Actor: the single place
// where its callbacks are dispatched and where escaped exceptions are caught.
class ConnectionActorHost final : public ConnectionHandler, public ActorCell {
 public:
  // `conn`: the accepted connection; null for an outbound one, which is
  // bound when it opens (it does not exist before the dial).
  ConnectionActorHost(Connection* conn, std::unique_ptr<Actor> actor,
                      std::shared_ptr<const ActorShared> shared)
      : ActorCell(shared->offload), actor_(std::move(actor)), shared_(std::move(shared)) {
    if (conn != nullptr) Bind(conn->reactor(), conn->id(), conn, &shared_->codec);
  }

  void OnOpen(Connection& conn) override {
    if (connection() == nullptr) Bind(conn.reactor(), conn.id(), &conn, &shared_->codec);
    Dispatch([&](Context& ctx) { actor_->OnOpen(ctx); });
  }

  size_t OnData(Connection& conn, std::string_view data) override {
    const Codec& codec = shared_->codec;
    if (codec.options().kind == CodecKind::kRaw) {
      Dispatch([&](Context& ctx) { actor_->OnMessage(ctx, data); });
      return data.size();
    }
    absl::StatusOr<size_t> used = codec.Parse(
        data,
        [&](std::string_view message) {
          Dispatch([&](Context& ctx) { actor_->OnMessage(ctx, message); });
          // Once closing (CloseAfterFlush, even while replies are owed) no
          // further request is taken; at max_pending_work (or while the
          // actor paused reading) the rest waits unconsumed.
          return !conn.closing() && !conn.work_full() && !conn.reading_paused();
        },
        &scanned_);
    if (!used.ok()) {
      TROUPE_LOG_EVERY_SECOND(kWarning, "closing %s: %s", conn.peer().ToString(),
                              std::string(used.status().message()));
      conn.Close(CloseReason::kProtocolError);
      return 0;
    }
    return *used;
  }

  void OnMail(Connection& /*conn*/, Mail mail) override {
    if (TakeSystemMail(mail)) return;
    set_current_request(mail.return_address());
    Dispatch([&](Context& ctx) { actor_->OnMail(ctx, std::move(mail)); });
    set_current_request({});
  }

  void OnPeerClosed(Connection& /*conn*/) override {
    Dispatch([&](Context& ctx) { actor_->OnPeerClosed(ctx); });
  }

  void OnOutputDrained(Connection& /*conn*/) override {
    Dispatch([&](Context& ctx) { actor_->OnOutputDrained(ctx); });
  }

  void OnClose(Connection& conn, CloseReason reason) override {
    NotifyWatchers(reason);
    LeaveAllGroups();
    Context ctx(*this);
    try {
      actor_->OnClose(ctx, reason);
    } catch (...) {
      TROUPE_LOG_EVERY_SECOND(kWarning, "actor for %s threw in OnClose", conn.peer().ToString());
    }
  }

  size_t input_limit() const override { return shared_->codec.MaxPartialBytes(); }

  void AddWork() override { connection()->AddPendingWork(); }
  void FinishWork() override { connection()->FinishPendingWork(); }
  bool closing() const override { return connection()->closing(); }
  bool ended() const override { return connection()->closed(); }
  void Stop() override { connection()->Close(CloseReason::kLocalClose); }
  // The connection pays for its handler's failure, nobody else.
  void Failed(std::string_view what) override {
    Connection& conn = *connection();
    TROUPE_LOG_EVERY_SECOND(kWarning, "closing %s: handler threw: %s", conn.peer().ToString(),
                            std::string(what));
    if (current_request().valid()) {
      SendReply(current_request(),
                absl::InternalError(absl::StrCat("the asked actor threw: ", std::string(what))));
    }
    conn.Close(CloseReason::kHandlerError);
  }

 private:
  std::unique_ptr<Actor> actor_;
  std::shared_ptr<const ActorShared> shared_;
  size_t scanned_ = 0;  // lines codec: the partial line searched so far
};

}  // namespace
}  // namespace internal

Connection& Context::Conn() const {
  Connection* conn = cell_.connection();
  TROUPE_CHECK(conn != nullptr, "a connection-only Context call on a service actor");
  return *conn;
}

void Context::WriteFrame(Bytes payload) { cell_.codec()->Write(Conn(), payload); }

bool Context::TryWriteFrame(Bytes payload) {
  if (Conn().behind()) {
    cell_.reactor().CountShedInLoop();
    return false;
  }
  WriteFrame(payload);
  return true;
}

void Context::Close() { cell_.Stop(); }
ActorRef Context::Self() const { return cell_.self(); }
bool Context::is_service() const { return cell_.connection() == nullptr; }
uint32_t Context::reactor_count() const {
  return static_cast<uint32_t>(cell_.reactor().peer_count());
}
bool Context::closing() const { return cell_.closing(); }

bool Context::Send(ActorRef to, Mail mail) {
  Reactor& here = cell_.reactor();
  // Same reactor: straight into the target's mailbox, so the answer is the
  // real one (taken, gone, or mailbox full); it is handed over in the
  // mailbox phase, never inside this callback.
  if (to.valid() && to.reactor == here.index()) return here.DeliverMailInLoop(to, std::move(mail));
  // A request passed on (mail with a return address) that is refused here
  // bounces to its asker, as it would at the target's reactor.
  const ReturnAddress address = mail.return_address();
  if (!to.valid() || to.reactor >= here.peer_count()) {
    here.CountInvalidRefInLoop();  // dropped and counted, never fatal
    cell_.BounceRequest(address, to, MailDrop::kInvalidRef);
    return false;
  }
  if (here.peer(to.reactor).SendMail(to, std::move(mail))) return true;
  cell_.BounceRequest(address, to, MailDrop::kInboxFull);
  return false;
}

void Context::AskMail(ActorRef to, Mail request, absl::Duration timeout,
                      absl::AnyInvocable<void(Context&, absl::StatusOr<Mail>) &&> on_reply) {
  const uint64_t tag = cell_.StartAsk(timeout, std::move(on_reply));
  if (request.empty()) {
    cell_.FailAskSoon(tag, absl::InvalidArgumentError("Ask with empty mail"));
    return;
  }
  request.set_return_address(ReturnAddress{Self(), tag});
  Reactor& here = cell_.reactor();
  if (to.valid() && to.reactor == here.index()) {
    // A refusal here bounces (Reactor::DeliverMailInLoop): the answer comes.
    here.DeliverMailInLoop(to, std::move(request));
    return;
  }
  if (!to.valid() || to.reactor >= here.peer_count()) {
    here.CountInvalidRefInLoop();
    cell_.FailAskSoon(tag, internal::StatusForDrop(to, MailDrop::kInvalidRef));
    return;
  }
  if (!here.peer(to.reactor).SendMail(to, std::move(request))) {
    cell_.FailAskSoon(tag, internal::StatusForDrop(to, MailDrop::kInboxFull));
  }
}

bool Context::ReplyMail(ReturnAddress to, Mail reply) {
  return cell_.SendReply(to, std::move(reply));
}

bool Context::ReplyError(ReturnAddress to, absl::Status error) {
  if (error.ok()) error = absl::InternalError("ReplyError with an OK status");
  return cell_.SendReply(to, std::move(error));
}

void Context::InOrder(absl::AnyInvocable<void(Context&) &&> fn) {
  internal::Continuation next;
  next.seq = BeginOffload();
  next.holds_work = true;
  next.incarnation = cell_.incarnation();
  next.run = std::move(fn);
  // Through the mailbox: never run inside the caller's own callback.
  cell_.reactor().DeliverMailInLoop(Self(), Mail::Of(std::move(next)), MailClass::kSystem);
}

void Context::Connect(
    const Address& to, std::unique_ptr<Actor> actor, const ConnectOptions& options,
    absl::AnyInvocable<void(Context&, absl::StatusOr<ActorRef>) &&> on_connected) {
  TROUPE_CHECK(actor != nullptr, "Context::Connect needs an actor");
  Reactor& here = cell_.reactor();
  const ActorRef self = Self();
  const uint32_t incarnation = cell_.incarnation();
  cell_.AddWork();
  auto shared = std::make_shared<const internal::ActorShared>(
      internal::ActorShared{Codec(options.codec), options.offload});
  here.Connect(
      to, options.timeout,
      std::make_unique<internal::ConnectionActorHost>(nullptr, std::move(actor), std::move(shared)),
      [&here, self, incarnation,
       on_connected = std::move(on_connected)](absl::StatusOr<ConnectionId> result) mutable {
        // The outcome comes home as system mail, like any answer this actor
        // asked for (dropped if it has gone meanwhile).
        internal::Continuation next;
        next.holds_work = true;
        next.incarnation = incarnation;
        next.run = [on_connected = std::move(on_connected), result = std::move(result)](
                       Context& ctx) mutable { std::move(on_connected)(ctx, std::move(result)); };
        here.DeliverMailInLoop(self, Mail::Of(std::move(next)), MailClass::kSystem);
      });
}

void Context::Watch(ActorRef ref) { cell_.Watch(ref); }
void Context::Unwatch(ActorRef ref) { cell_.Unwatch(ref); }

void Context::After(absl::Duration delay, absl::AnyInvocable<void(Context&) &&> fn) {
  Schedule(delay, std::move(fn), /*owed=*/false);
}

void Context::ReplyAfter(absl::Duration delay, absl::AnyInvocable<void(Context&) &&> fn) {
  Schedule(delay, std::move(fn), /*owed=*/true);
}

void Context::Schedule(absl::Duration delay, absl::AnyInvocable<void(Context&) &&> fn, bool owed) {
  Reactor& reactor = cell_.reactor();
  const ActorRef self = Self();
  const uint32_t incarnation = cell_.incarnation();
  if (owed) cell_.AddWork();
  // Through the mailbox, so a timer and mail keep one order of delivery and
  // a gone actor's timer is dropped like its mail.
  reactor.RunAfter(delay, [&reactor, self, owed, incarnation, fn = std::move(fn)]() mutable {
    internal::Continuation next;
    next.run = std::move(fn);
    next.holds_work = owed;
    next.incarnation = incarnation;
    reactor.DeliverMailInLoop(self, Mail::Of(std::move(next)), MailClass::kSystem);
  });
}

uint64_t Context::BeginOffload() {
  cell_.AddWork();
  return cell_.NextSeq();
}

uint32_t Context::Incarnation() const { return cell_.incarnation(); }
void Context::SubmitOffload(OffloadPool::Job job) { cell_.offload().Submit(std::move(job)); }
std::weak_ptr<Inbox> Context::HomeInbox() const { return cell_.reactor().inbox(); }
void Context::Fail() { cell_.Fail(); }
void Context::AddPendingWork() { cell_.AddWork(); }
void Context::FinishPendingWork() { cell_.FinishWork(); }
void Context::Join(std::string_view group) { cell_.Join(group); }
void Context::Leave(std::string_view group) { cell_.Leave(group); }

void Context::Broadcast(std::string_view group, std::string text, bool include_self) {
  const ActorRef skip = include_self ? ActorRef{} : Self();
  const internal::GroupFanOut fan_out = internal::GroupFanOut::Create(
      GroupMessage{std::string(group), Self(), std::move(text)}, skip);
  Reactor& here = cell_.reactor();
  // Into every local member's mailbox now, as a Send to it would go, so a
  // broadcast and this actor's sends keep their order.
  internal::FanOutInLoop(here, fan_out.shared(), skip);
  for (uint32_t i = 0; i < here.peer_count(); ++i) {
    if (i == here.index()) continue;
    Reactor& target = here.peer(i);
    // One task per other reactor; it fans out to that reactor's members.
    // Posting from this thread keeps this sender's broadcasts (and its mail
    // to that reactor) in order. The task counts as user mail at the inbox:
    // a full inbox refuses it (counted there, inbox_full). It only queues
    // mail, so broadcasts arriving together are handed over together.
    target.TryPostFanOut(fan_out.To(target));
  }
  // And to the other nodes (actors/bus.h); the bus copies what it sends.
  if (GroupBus* bus = here.Local<internal::BusLink>().bus) {
    bus->Publish(group, fan_out.message().text);
  }
}

HandlerFactory ActorFactory(std::function<std::unique_ptr<Actor>()> make,
                            const ActorOptions& options) {
  auto shared = std::make_shared<const internal::ActorShared>(
      internal::ActorShared{Codec(options.codec), options.offload});
  return [make = std::move(make), shared](Connection& conn) -> std::unique_ptr<ConnectionHandler> {
    return std::make_unique<internal::ConnectionActorHost>(&conn, make(), shared);
  };
}

}  // namespace troupe
