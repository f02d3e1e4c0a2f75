#include "actors/actor.h"

#include <deque>
#include <exception>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "core/log.h"

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

// The ConnectionHandler that runs one Actor: the single place where actor
// callbacks are dispatched and where escaped exceptions are caught.
class ActorHost final : public ConnectionHandler {
 public:
  ActorHost(std::unique_ptr<Actor> actor, std::shared_ptr<const internal::ActorShared> shared)
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
    absl::StatusOr<size_t> used = codec.Parse(data, [&](std::string_view message) {
      Dispatch(conn, [&](Context& ctx) { actor_->OnMessage(ctx, message); });
      return !conn.closed() && conn.state() == Connection::State::kOpen;
    });
    if (!used.ok()) {
      TROUPE_LOG_EVERY_SECOND(kWarning, "closing %s: %s", conn.peer().ToString(),
                              std::string(used.status().message()));
      conn.Close(CloseReason::kProtocolError);
      return 0;
    }
    return *used;
  }

  void OnMail(Connection& conn, Mail mail) override {
    // Created on first mail: an empty std::deque already allocates ~600
    // bytes, which most connections (echo) would carry for nothing.
    if (mailbox_ == nullptr) mailbox_ = std::make_unique<std::deque<Mail>>();
    std::deque<Mail>& mailbox = *mailbox_;
    mailbox.push_back(std::move(mail));
    // Take mail in arrival order. Mail an actor sends (even to itself)
    // goes through a reactor inbox, never straight back here, so this loop
    // does not recurse.
    while (!mailbox.empty() && !conn.closed()) {
      Mail next = std::move(mailbox.front());
      mailbox.pop_front();
      if (auto* continuation = next.As<internal::Continuation>()) {
        Dispatch(conn, [&](Context& ctx) { std::move(continuation->run)(ctx); });
      } else {
        Dispatch(conn, [&](Context& ctx) { actor_->OnMail(ctx, std::move(next)); });
      }
    }
  }

  void OnPeerClosed(Connection& conn) override {
    Dispatch(conn, [&](Context& ctx) { actor_->OnPeerClosed(ctx); });
  }

  void OnClose(Connection& conn, CloseReason reason) override {
    mailbox_.reset();
    LeaveAllGroups(conn);
    Context ctx(conn, *shared_);
    try {
      actor_->OnClose(ctx, reason);
    } catch (...) {
      TROUPE_LOG_EVERY_SECOND(kWarning, "actor for %s threw in OnClose",
                              conn.peer().ToString());
    }
  }

  std::vector<std::string>& groups() { return groups_; }

 private:
  template <typename Fn>
  void Dispatch(Connection& conn, Fn&& fn) {
    Context ctx(conn, *shared_);
    try {
      fn(ctx);
    } catch (const std::exception& e) {
      TROUPE_LOG_EVERY_SECOND(kWarning, "closing %s: handler threw: %s",
                              conn.peer().ToString(), e.what());
      conn.Close(CloseReason::kHandlerError);
    } catch (...) {
      TROUPE_LOG_EVERY_SECOND(kWarning, "closing %s: handler threw",
                              conn.peer().ToString());
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
  std::shared_ptr<const internal::ActorShared> shared_;
  std::unique_ptr<std::deque<Mail>> mailbox_;  // mail not yet handed to OnMail
  std::vector<std::string> groups_;  // joined groups, left on close
};

}  // namespace

void Context::WriteFrame(Bytes payload) { shared_.codec.Write(conn_, payload); }

void Context::Send(ActorRef to, Mail mail) {
  conn_.reactor().peer(to.reactor).SendMail(to, std::move(mail));
}

void Context::After(absl::Duration delay, absl::AnyInvocable<void(Context&) &&> fn) {
  Reactor& reactor = conn_.reactor();
  const ActorRef self = Self();
  // Through the mailbox, so a timer and mail keep one order of delivery and
  // a gone actor's timer is dropped like its mail.
  reactor.RunAfter(delay, [&reactor, self, fn = std::move(fn)]() mutable {
    reactor.SendMail(self, Mail::Of(internal::Continuation{std::move(fn)}));
  });
}

void Context::SubmitOffload(OffloadPool::Job job) {
  OffloadPool* pool = shared_.offload != nullptr ? shared_.offload : &OffloadPool::Default();
  pool->Submit(std::move(job));
}

void Context::Join(std::string_view group) {
  auto* host = static_cast<ActorHost*>(conn_.handler());
  for (const std::string& g : host->groups()) {
    if (g == group) return;
  }
  host->groups().emplace_back(group);
  conn_.reactor().Local<GroupShard>().members[std::string(group)].insert(Self());
}

void Context::Leave(std::string_view group) {
  auto* host = static_cast<ActorHost*>(conn_.handler());
  auto& groups = host->groups();
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
  for (uint32_t i = 0; i < here.peer_count(); ++i) {
    Reactor& target = here.peer(i);
    // One task per reactor; it fans out to that reactor's local members.
    // Posting from this thread keeps this sender's broadcasts in order.
    target.Post([&target, message, skip] {
      GroupShard& shard = target.Local<GroupShard>();
      auto it = shard.members.find(message->group);
      if (it == shard.members.end()) return;
      // Copy first: a member's OnMail may join or leave the group.
      std::vector<ActorRef> members(it->second.begin(), it->second.end());
      for (const ActorRef& member : members) {
        if (member == skip) continue;
        target.DeliverMailInLoop(member, Mail::Share(message));
      }
    });
  }
}

HandlerFactory ActorFactory(std::function<std::unique_ptr<Actor>()> make,
                            const ActorOptions& options) {
  auto shared = std::make_shared<const internal::ActorShared>(
      internal::ActorShared{Codec(options.codec), options.offload});
  return [make = std::move(make), shared](Connection&) -> std::unique_ptr<ConnectionHandler> {
    return std::make_unique<ActorHost>(make(), shared);
  };
}

}  // namespace troupe
