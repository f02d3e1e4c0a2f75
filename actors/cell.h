// ActorCell: what every actor has, whichever kind serves it (a connection,
// actors/actor.cc; or a service, actors/service.cc): its reactor and ref,
// the order its asynchronous results run in, its outstanding Asks, who
// watches it and whom it watches, and its groups. Context (actors/actor.h)
// is a view of one cell; the two hosts derive from it and supply what
// differs (how a failure ends the actor, what "pending work" holds up).
//
// Ordered results: every Offload and every Ask takes the next number of one
// sequence, and their continuations run in that order, whichever finishes
// first, so a connection that pipelines requests answers them in order.
//
// Library mail (TakeSystemMail): continuations, Ask replies and bounces,
// Ask timeouts, watch requests and Terminated for an unwatched ref are
// consumed here and never reach the user's OnMail.
//
// Incarnations: a restarted service gets a fresh actor object; results and
// timers of the old one (which may point into it) carry the old incarnation
// and are dropped.
//
// Thread safety: loop-affine (the actor's reactor). Internal to the actor
// layer.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/hash/hash.h"
#include "absl/status/statusor.h"
#include "actors/actor.h"
#include "actors/bus.h"

namespace troupe {
namespace internal {

struct RefHash {
  size_t operator()(const ActorRef& r) const {
    return absl::HashOf(r.reactor, r.slot, r.generation);
  }
};

// Library mail between cells; each is held in the Mail itself (no
// allocation, core/loop/mail.h).
//
// The answer to Ask `tag` travels as the reply's own Mail, its return
// address set to {kAskReplyMark, tag}: a Mail cannot hold a Mail in place,
// so wrapping it would allocate per reply. The mark names no actor (no
// generation), so a dropped reply never bounces, as before.
inline constexpr ConnectionId kAskReplyMark{~uint32_t{0}, ~uint32_t{0}, 0};
struct AskStatus {  // the answer to Ask `tag` with no value: an error, or
  uint64_t tag;     // OK for an empty reply (an empty Mail has no address)
  absl::Status status;
};
struct AskSweep {};  // an Ask deadline may have passed
struct WatchRequest {
  ActorRef watcher;
};
struct UnwatchRequest {  // Unwatch, or the watcher ended: forget it
  ActorRef watcher;
};

class ActorCell {
 public:
  using Clock = std::chrono::steady_clock;
  using OnReply = absl::AnyInvocable<void(Context&, absl::StatusOr<Mail>) &&>;

  explicit ActorCell(OffloadPool* offload) : offload_(offload) {}
  virtual ~ActorCell() = default;
  ActorCell(const ActorCell&) = delete;
  ActorCell& operator=(const ActorCell&) = delete;

  Reactor& reactor() const { return *reactor_; }
  ActorRef self() const { return self_; }
  Connection* connection() const { return conn_; }  // null: a service
  OffloadPool& offload() const { return offload_ != nullptr ? *offload_ : OffloadPool::Default(); }
  const Codec* codec() const { return codec_; }  // null: a service
  uint32_t incarnation() const { return incarnation_; }

  // What differs by kind.
  virtual void AddWork() = 0;
  virtual void FinishWork() = 0;
  virtual bool closing() const = 0;
  virtual bool ended() const = 0;  // closed, or stopped
  virtual void Stop() = 0;         // Context::Close()
  // An exception escaped this actor's handler or its asynchronous work:
  // each kind decides what a failure does (a connection closes; a service
  // meets its restart policy).
  virtual void Failed(std::string_view what) = 0;
  void Fail() { Failed("asynchronous work threw"); }

  // Ordered results (Offload, Ask): the next place in the order.
  uint64_t NextSeq() { return next_seq_++; }
  // A result for place `c.seq` (0: unordered, runs now).
  void Accept(Continuation c);

  // Starts an Ask: its place, its deadline, counted as pending work.
  uint64_t StartAsk(absl::Duration timeout, OnReply on_reply);
  // Ends Ask `tag` with `result` unless it already ended (then: late).
  void Resolve(uint64_t tag, absl::StatusOr<Mail> result);
  // Sends `status` to this actor's own mailbox as the answer to `tag`, so the
  // callback never runs inside the call that asked.
  void FailAskSoon(uint64_t tag, absl::Status status);

  // The library's own mail: consumed (true), or the user's (false).
  bool TakeSystemMail(Mail& mail);

  // Watches.
  void Watch(ActorRef ref);
  void Unwatch(ActorRef ref);
  // This actor ended: every watcher gets Terminated{self, reason}, and
  // every actor it watched forgets it.
  void NotifyWatchers(CloseReason reason);
  // Tells the asker of a request this actor could not pass on.
  void BounceRequest(ReturnAddress address, ActorRef to, MailDrop reason);

  // Requests: the one being handled now (set around a user OnMail), so a
  // handler that throws before answering answers with an error.
  void set_current_request(ReturnAddress address) { current_request_ = address; }
  ReturnAddress current_request() const { return current_request_; }
  bool SendReply(ReturnAddress to, absl::StatusOr<Mail> reply);

  // Groups (membership kept per reactor; see actors/actor.cc).
  void Join(std::string_view group);
  void Leave(std::string_view group);
  void LeaveAllGroups();

 protected:
  void Bind(Reactor& reactor, ActorRef self, Connection* conn, const Codec* codec) {
    reactor_ = &reactor;
    self_ = self;
    conn_ = conn;
    codec_ = codec;
  }
  // Runs `fn` with this actor's Context; what it throws goes to Failed().
  // The one try/catch around user code.
  virtual void Dispatch(absl::FunctionRef<void(Context&)> fn);
  // A new actor object replaces the old (a restart): forget everything that
  // pointed into the old one.
  void NewIncarnation();

 private:
  void Run(Continuation c);
  void ArmAskTimer(Clock::time_point deadline);
  void SweepAsks();
  void DeliverToSelf(Mail mail);

  Reactor* reactor_ = nullptr;
  ActorRef self_;
  Connection* conn_ = nullptr;
  const Codec* codec_ = nullptr;
  OffloadPool* const offload_;
  uint32_t incarnation_ = 0;

  uint64_t next_seq_ = 1;     // the next Offload's or Ask's place
  uint64_t next_result_ = 1;  // the next place to run
  // Results that came before an earlier one, by place; allocated on first
  // use, so an actor that never waits pays a pointer.
  std::unique_ptr<absl::btree_map<uint64_t, Continuation>> early_;

  struct PendingAsk {
    OnReply on_reply;
    Clock::time_point deadline;
  };
  absl::btree_map<uint64_t, PendingAsk> asks_;                   // by tag (= place)
  absl::btree_set<std::pair<Clock::time_point, uint64_t>> due_;  // finite deadlines
  Clock::time_point timer_at_ = Clock::time_point::max();        // the armed sweep

  absl::flat_hash_set<ActorRef, RefHash> watchers_;  // who gets Terminated
  absl::flat_hash_set<ActorRef, RefHash> watching_;  // whose Terminated we want
  ReturnAddress current_request_;
  std::vector<std::string> groups_;
};

// Hands `message` to every member of its group on `reactor` (the caller's
// reactor thread), except `skip`; one shared payload, no copies, and no
// allocation (Mail::Share holds the shared_ptr in place).
void FanOutInLoop(Reactor& reactor, const std::shared_ptr<const GroupMessage>& message,
                  ActorRef skip);

// One broadcast on its way to the members on every reactor: the sender holds
// one, and each task that carries it to another reactor holds one
// (target.TryPost(fan_out.To(target))). The message is made once (the
// broadcast's one allocation) and shared with every member's Mail; a hold is
// two pointers, counted in the message's envelope, so a task carrying one
// fits absl::AnyInvocable's inline storage (16 bytes) where a lambda holding
// a shared_ptr and the target would not, and allocate per reactor.
//
// Thread safety: each hold is moved between threads, never shared; the
// count is atomic and the last hold to go drops the envelope's own share.
class GroupFanOut {
 public:
  static GroupFanOut Create(GroupMessage message, ActorRef skip);
  GroupFanOut(GroupFanOut&& other) noexcept
      : envelope_(std::exchange(other.envelope_, nullptr)), target_(other.target_) {}
  GroupFanOut& operator=(GroupFanOut&&) = delete;
  ~GroupFanOut();

  const GroupMessage& message() const;
  std::shared_ptr<const GroupMessage> shared() const;
  // Another hold, for the task that fans out on `target`.
  GroupFanOut To(Reactor& target) const;
  // On the target's thread: FanOutInLoop there.
  void operator()();

 private:
  struct Envelope;
  GroupFanOut(Envelope* envelope, Reactor* target) : envelope_(envelope), target_(target) {}
  Envelope* envelope_;  // null once moved from
  Reactor* target_;     // null: the sender's hold
};

// The node's group bus, if any (actors/bus.h), in each reactor's Local
// storage: set by AttachBus before the reactors run.
struct BusLink {
  GroupBus* bus = nullptr;
};

// absl::Status for a request that never reached its actor.
absl::Status StatusForDrop(ActorRef to, MailDrop reason);

}  // namespace internal
}  // namespace troupe
