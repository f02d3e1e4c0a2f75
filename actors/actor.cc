#include "actors/actor.h"

#include <exception>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "core/base/log.h"

namespace troupe {
namespace {

struct RefHash {
  size_t operator()(const ActorRef& r) const {
    return absl::HashOf(r.reactor, r.slot, r.generation);
  }
};

// This reactor's members of each group (Reactor::Local storage): the
// directory is sharded by reactor, so joins and leaves never leave the
// actor's own thread, and a broadcast is one posted task per reactor.
struct GroupShard {
  absl::flat_hash_map<std::string, absl::flat_hash_set<ActorRef, RefHash>> members;
};

// Hands `message` to every member of its group on `reactor` (the caller's
// reactor thread), except `skip`; one shared payload, no copies.
void FanOutInLoop(Reactor& reactor, const std::shared_ptr<const GroupMessage>& message,
                  ActorRef skip) {
  GroupShard& shard = reactor.Local<GroupShard>();
  auto it = shard.members.find(message->group);
  if (it == shard.members.end()) return;
  for (const ActorRef& member : it->second) {
    if (member == skip) continue;
    // Queued, not delivered: no member's OnMail runs (or changes the set)
    // while the set is walked.
    reactor.DeliverMailInLoop(member, Mail::Share(message));
  }
}

}  // namespace

namespace internal {

// The ConnectionHandler that runs one Actor: the single place where actor
// callbacks are dispatched and where escaped exceptions are caught.
class ActorHost final : public ConnectionHandler {
 public:
  ActorHost(std::unique_ptr<Actor> actor, std::shared_ptr<const ActorShared> shared)
      : actor_(std::move(actor)), shared_(std::move(shared)) {}

  void OnOpen(Connection& conn) override {
    Dispatch(conn, [&](Context& ctx) { actor_->OnOpen(ctx); });
  }

  size_t OnData(Connection& conn, std::string_view data) override {
    const Codec& codec = shared_->codec;
    if (codec.options().kind == CodecKind::kRaw) {
      Dispatch(conn, [&](Context& ctx) { actor_->OnMessage(ctx, data); });
      return data.size();
    }
    absl::StatusOr<size_t> used = codec.Parse(
        data,
        [&](std::string_view message) {
          Dispatch(conn, [&](Context& ctx) { actor_->OnMessage(ctx, message); });
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

  void OnMail(Connection& conn, Mail mail) override {
    auto* continuation = mail.As<Continuation>();
    if (continuation == nullptr) {
      Dispatch(conn, [&](Context& ctx) { actor_->OnMail(ctx, std::move(mail)); });
      return;
    }
    if (continuation->offload_seq == 0) {
      Run(conn, std::move(*continuation));
      return;
    }
    // Offload results run in submission order: one that finished early
    // waits here for those before it. Bounded by the work this actor asked
    // for.
    if (continuation->offload_seq != next_result_) {
      if (early_results_ == nullptr) early_results_ = std::make_unique<EarlyResults>();
      early_results_->emplace(continuation->offload_seq, std::move(*continuation));
      return;
    }
    Run(conn, std::move(*continuation));
    ++next_result_;
    while (early_results_ != nullptr && !early_results_->empty()) {
      auto it = early_results_->find(next_result_);
      if (it == early_results_->end()) break;
      Continuation next = std::move(it->second);
      early_results_->erase(it);
      ++next_result_;
      if (!conn.closed()) Run(conn, std::move(next));
    }
  }

  void OnPeerClosed(Connection& conn) override {
    Dispatch(conn, [&](Context& ctx) { actor_->OnPeerClosed(ctx); });
  }

  void OnOutputDrained(Connection& conn) override {
    Dispatch(conn, [&](Context& ctx) { actor_->OnOutputDrained(ctx); });
  }

  void OnClose(Connection& conn, CloseReason reason) override {
    early_results_.reset();
    LeaveAllGroups(conn);
    Context ctx(conn, *this);
    try {
      actor_->OnClose(ctx, reason);
    } catch (...) {
      TROUPE_LOG_EVERY_SECOND(kWarning, "actor for %s threw in OnClose", conn.peer().ToString());
    }
  }

  size_t input_limit() const override { return shared_->codec.MaxPartialBytes(); }

  const ActorShared& shared() const { return *shared_; }
  std::vector<std::string>& groups() { return groups_; }
  uint64_t NextOffloadSeq() { return next_offload_++; }

 private:
  void Run(Connection& conn, Continuation continuation) {
    Dispatch(conn, [&](Context& ctx) { std::move(continuation.run)(ctx); });
    // After the reply is written: the last owed reply lets a waiting
    // CloseAfterFlush go ahead.
    if (continuation.holds_work) conn.FinishPendingWork();
  }

  template <typename Fn>
  void Dispatch(Connection& conn, Fn&& fn) {
    Context ctx(conn, *this);
    try {
      fn(ctx);
    } catch (const std::exception& e) {
      TROUPE_LOG_EVERY_SECOND(kWarning, "closing %s: handler threw: %s", conn.peer().ToString(),
                              e.what());
      conn.Close(CloseReason::kHandlerError);
    } catch (...) {
      TROUPE_LOG_EVERY_SECOND(kWarning, "closing %s: handler threw", conn.peer().ToString());
      conn.Close(CloseReason::kHandlerError);
    }
  }

  void LeaveAllGroups(Connection& conn) {
    if (groups_.empty()) return;
    GroupShard& shard = conn.reactor().Local<GroupShard>();
    for (const std::string& group : groups_) {
      auto it = shard.members.find(group);
      if (it == shard.members.end()) continue;
      it->second.erase(conn.id());
      if (it->second.empty()) shard.members.erase(it);
    }
    groups_.clear();
  }

  std::unique_ptr<Actor> actor_;
  std::shared_ptr<const ActorShared> shared_;
  std::vector<std::string> groups_;  // joined groups, left on close
  size_t scanned_ = 0;               // lines codec: the partial line searched so far
  uint64_t next_offload_ = 1;        // the next Offload's place in the order
  uint64_t next_result_ = 1;         // the next result to run
  // Results that finished before an earlier one, by place; created when one
  // first does, so an actor that never offloads pays a pointer.
  using EarlyResults = absl::flat_hash_map<uint64_t, Continuation>;
  std::unique_ptr<EarlyResults> early_results_;
};

}  // namespace internal

Context::Context(Connection& conn, internal::ActorHost& host) : conn_(conn), host_(host) {}

void Context::WriteFrame(Bytes payload) { host_.shared().codec.Write(conn_, payload); }

bool Context::TryWriteFrame(Bytes payload) {
  if (conn_.behind()) {
    conn_.reactor().CountShedInLoop();
    return false;
  }
  WriteFrame(payload);
  return true;
}

bool Context::Send(ActorRef to, Mail mail) {
  Reactor& here = conn_.reactor();
  // Same reactor: straight into the target's mailbox, so the answer is the
  // real one (taken, gone, or mailbox full); it is handed over in the
  // mailbox phase, never inside this callback.
  if (to.valid() && to.reactor == here.index()) return here.DeliverMailInLoop(to, std::move(mail));
  if (!to.valid() || to.reactor >= here.peer_count()) {
    here.CountInvalidRefInLoop();  // dropped and counted, never fatal
    return false;
  }
  return here.peer(to.reactor).SendMail(to, std::move(mail));
}

void Context::After(absl::Duration delay, absl::AnyInvocable<void(Context&) &&> fn) {
  Schedule(delay, std::move(fn), /*owed=*/false);
}

void Context::ReplyAfter(absl::Duration delay, absl::AnyInvocable<void(Context&) &&> fn) {
  Schedule(delay, std::move(fn), /*owed=*/true);
}

void Context::Schedule(absl::Duration delay, absl::AnyInvocable<void(Context&) &&> fn, bool owed) {
  Reactor& reactor = conn_.reactor();
  const ActorRef self = Self();
  if (owed) conn_.AddPendingWork();
  // Through the mailbox, so a timer and mail keep one order of delivery and
  // a gone actor's timer is dropped like its mail.
  reactor.RunAfter(delay, [&reactor, self, owed, fn = std::move(fn)]() mutable {
    internal::Continuation next;
    next.run = std::move(fn);
    next.holds_work = owed;
    reactor.DeliverMailInLoop(self, Mail::Of(std::move(next)), MailClass::kSystem);
  });
}

uint64_t Context::BeginOffload() {
  conn_.AddPendingWork();
  return host_.NextOffloadSeq();
}

void Context::SubmitOffload(OffloadPool::Job job) {
  OffloadPool* pool = host_.shared().offload;
  if (pool == nullptr) pool = &OffloadPool::Default();
  pool->Submit(std::move(job));
}

void Context::Join(std::string_view group) {
  for (const std::string& g : host_.groups()) {
    if (g == group) return;
  }
  host_.groups().emplace_back(group);
  conn_.reactor().Local<GroupShard>().members[std::string(group)].insert(Self());
}

void Context::Leave(std::string_view group) {
  auto& groups = host_.groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    if (groups[i] != group) continue;
    groups.erase(groups.begin() + static_cast<ptrdiff_t>(i));
    GroupShard& shard = conn_.reactor().Local<GroupShard>();
    auto it = shard.members.find(std::string(group));
    if (it != shard.members.end()) {
      it->second.erase(Self());
      if (it->second.empty()) shard.members.erase(it);
    }
    return;
  }
}

void Context::Broadcast(std::string_view group, std::string text, bool include_self) {
  auto message = std::make_shared<const GroupMessage>(
      GroupMessage{std::string(group), Self(), std::move(text)});
  const ActorRef skip = include_self ? ActorRef{} : Self();
  Reactor& here = conn_.reactor();
  // Into every local member's mailbox now, as a Send to it would go, so a
  // broadcast and this actor's sends keep their order.
  FanOutInLoop(here, message, skip);
  for (uint32_t i = 0; i < here.peer_count(); ++i) {
    if (i == here.index()) continue;
    Reactor& target = here.peer(i);
    // One task per other reactor; it fans out to that reactor's members.
    // Posting from this thread keeps this sender's broadcasts (and its mail
    // to that reactor) in order. The task counts as user mail at the inbox:
    // a full inbox refuses it (counted there, inbox_full).
    target.TryPost([&target, message, skip] { FanOutInLoop(target, message, skip); });
  }
}

HandlerFactory ActorFactory(std::function<std::unique_ptr<Actor>()> make,
                            const ActorOptions& options) {
  auto shared = std::make_shared<const internal::ActorShared>(
      internal::ActorShared{Codec(options.codec), options.offload});
  return [make = std::move(make), shared](Connection&) -> std::unique_ptr<ConnectionHandler> {
    return std::make_unique<internal::ActorHost>(make(), shared);
  };
}

}  // namespace troupe
