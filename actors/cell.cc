#include "actors/cell.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/base/deadline.h"

namespace troupe {
namespace internal {

// The library's own mail is held in the Mail, never boxed on the heap.
static_assert(Mail::kHeldInline<Continuation>);
static_assert(Mail::kHeldInline<AskStatus>);
static_assert(Mail::kHeldInline<AskSweep>);
static_assert(Mail::kHeldInline<WatchRequest>);
static_assert(Mail::kHeldInline<UnwatchRequest>);
static_assert(Mail::kHeldInline<Terminated>);
static_assert(Mail::kHeldInline<Bounced>);
// A broadcast's task to another reactor is held in the task (see cell.h).
static_assert(sizeof(GroupFanOut) <= 2 * sizeof(void*));

namespace {

// This reactor's members of each group (Reactor::Local storage): the
// directory is sharded by reactor, so joins and leaves never leave the
// actor's own thread, and a broadcast is one posted task per reactor.
struct GroupShard {
  absl::flat_hash_map<std::string, absl::flat_hash_set<ActorRef, RefHash>> members;
};

// System mail to `to` from an actor on `here` (never refused by a capacity).
void SendSystem(Reactor& here, ActorRef to, Mail mail) {
  if (to.valid() && to.reactor == here.index()) {
    here.DeliverMailInLoop(to, std::move(mail), MailClass::kSystem);
  } else if (to.valid() && to.reactor < here.peer_count()) {
    here.peer(to.reactor).SendMail(to, std::move(mail), MailClass::kSystem);
  }
}

}  // namespace

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

struct GroupFanOut::Envelope {
  GroupMessage message;
  ActorRef skip;
  std::atomic<uint32_t> holds{1};
  // Its own share, dropped by the last hold; every member's Mail holds
  // another (an alias of this one).
  std::shared_ptr<Envelope> self;
};

GroupFanOut GroupFanOut::Create(GroupMessage message, ActorRef skip) {
  auto envelope = std::make_shared<Envelope>();
  envelope->message = std::move(message);
  envelope->skip = skip;
  envelope->self = envelope;
  return GroupFanOut(envelope.get(), nullptr);
}

GroupFanOut::~GroupFanOut() {
  if (envelope_ == nullptr) return;
  if (envelope_->holds.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    // The last hold: nobody else reads `self` now.
    std::shared_ptr<Envelope> last = std::move(envelope_->self);
  }
}

const GroupMessage& GroupFanOut::message() const { return envelope_->message; }

std::shared_ptr<const GroupMessage> GroupFanOut::shared() const {
  return std::shared_ptr<const GroupMessage>(envelope_->self, &envelope_->message);
}

GroupFanOut GroupFanOut::To(Reactor& target) const {
  envelope_->holds.fetch_add(1, std::memory_order_relaxed);  // we hold one already
  return GroupFanOut(envelope_, &target);
}

void GroupFanOut::operator()() { FanOutInLoop(*target_, shared(), envelope_->skip); }

absl::Status StatusForDrop(ActorRef to, MailDrop reason) {
  const std::string where = absl::StrCat("actor ", to.reactor, "/", to.slot & ~kServiceSlot, "/",
                                         to.generation, ": ", MailDropName(reason));
  switch (reason) {
    case MailDrop::kGone:
    case MailDrop::kInvalidRef:
    case MailDrop::kActorClosed:
      return absl::NotFoundError(absl::StrCat("no such actor (", where, ")"));
    default:
      return absl::ResourceExhaustedError(absl::StrCat("request refused (", where, ")"));
  }
}

void ActorCell::Accept(Continuation c) {
  if (c.incarnation != incarnation_) return;  // for an object a restart replaced
  if (c.seq == 0) {
    Run(std::move(c));
    return;
  }
  if (c.seq != next_result_) {
    // Came before an earlier one: waits, bounded by what this actor asked.
    if (early_ == nullptr) early_ = std::make_unique<absl::btree_map<uint64_t, Continuation>>();
    early_->emplace(c.seq, std::move(c));
    return;
  }
  const uint32_t incarnation = incarnation_;
  ++next_result_;
  Run(std::move(c));
  while (incarnation == incarnation_ && !ended() && early_ != nullptr && !early_->empty() &&
         early_->begin()->first == next_result_) {
    Continuation next = std::move(early_->begin()->second);
    early_->erase(early_->begin());
    ++next_result_;
    Run(std::move(next));
  }
}

void ActorCell::Dispatch(absl::FunctionRef<void(Context&)> fn) {
  Context ctx(*this);
  try {
    fn(ctx);
  } catch (const std::exception& e) {
    Failed(e.what());
  } catch (...) {
    Failed("unknown exception");
  }
}

void ActorCell::Run(Continuation c) {
  const uint32_t incarnation = incarnation_;
  Dispatch([&](Context& ctx) { std::move(c.run)(ctx); });
  // After the reply is written: the last owed reply lets a waiting
  // CloseAfterFlush go ahead. (A restart forgot the old object's work.)
  if (c.holds_work && incarnation == incarnation_) FinishWork();
}

uint64_t ActorCell::StartAsk(absl::Duration timeout, OnReply on_reply) {
  const uint64_t tag = NextSeq();
  AddWork();
  // Zero or infinite: no timeout, as for every timeout of the library.
  const Clock::time_point deadline =
      IsFiniteTimeout(timeout) ? DeadlineAfter(Clock::now(), timeout) : Clock::time_point::max();
  asks_.emplace(tag, PendingAsk{std::move(on_reply), deadline});
  if (deadline != Clock::time_point::max()) {
    due_.emplace(deadline, tag);
    ArmAskTimer(deadline);
  }
  return tag;
}

void ActorCell::ArmAskTimer(Clock::time_point deadline) {
  // One sweep timer armed at a time, for the earliest deadline; a later
  // Ask with an earlier deadline arms another (the first then sweeps
  // whatever is due by its time).
  if (deadline >= timer_at_) return;
  timer_at_ = deadline;
  Reactor& reactor = *reactor_;
  const ActorRef self = self_;
  reactor.RunAfter(absl::FromChrono(deadline - Clock::now()), [&reactor, self] {
    reactor.DeliverMailInLoop(self, Mail::Of(AskSweep{}), MailClass::kSystem);
  });
}

void ActorCell::SweepAsks() {
  timer_at_ = Clock::time_point::max();
  const Clock::time_point now = Clock::now();
  while (!due_.empty() && due_.begin()->first <= now) {
    const uint64_t tag = due_.begin()->second;
    due_.erase(due_.begin());
    auto it = asks_.find(tag);
    if (it == asks_.end()) continue;
    it->second.deadline = Clock::time_point::max();  // no longer in due_
    reactor_->CountInLoop(&ReactorCounters::asks_timed_out);
    Resolve(tag, absl::DeadlineExceededError("no reply within the Ask's timeout"));
  }
  if (!due_.empty()) ArmAskTimer(due_.begin()->first);
}

void ActorCell::Resolve(uint64_t tag, absl::StatusOr<Mail> result) {
  auto it = asks_.find(tag);
  if (it == asks_.end()) {
    // Answered already (timed out), or asked by an object a restart replaced.
    reactor_->CountInLoop(&ReactorCounters::ask_replies_late);
    return;
  }
  PendingAsk ask = std::move(it->second);
  asks_.erase(it);
  if (ask.deadline != Clock::time_point::max()) due_.erase({ask.deadline, tag});
  Continuation c;
  c.seq = tag;
  c.holds_work = true;
  c.incarnation = incarnation_;
  c.run = [on_reply = std::move(ask.on_reply), result = std::move(result)](Context& ctx) mutable {
    std::move(on_reply)(ctx, std::move(result));
  };
  Accept(std::move(c));
}

void ActorCell::FailAskSoon(uint64_t tag, absl::Status status) {
  DeliverToSelf(Mail::Of(AskStatus{tag, std::move(status)}));
}

void ActorCell::DeliverToSelf(Mail mail) {
  reactor_->DeliverMailInLoop(self_, std::move(mail), MailClass::kSystem);
}

bool ActorCell::TakeSystemMail(Mail& mail) {
  // First: a reply may be of any type, a library one too.
  if (const ReturnAddress mark = mail.return_address(); mark.to == kAskReplyMark) {
    mail.set_return_address({});  // the asker sees the reply as it was sent
    Resolve(mark.tag, std::move(mail));
    return true;
  }
  // System mail is always owned: a broadcast (shared) skips the type tests
  // below, each a string compare when it fails.
  if (mail.shared()) return false;
  if (Continuation* c = mail.As<Continuation>()) {
    Accept(std::move(*c));
    return true;
  }
  if (AskStatus* answer = mail.As<AskStatus>()) {
    if (answer->status.ok()) {
      Resolve(answer->tag, Mail());
    } else {
      Resolve(answer->tag, std::move(answer->status));
    }
    return true;
  }
  if (mail.Is<AskSweep>()) {
    SweepAsks();
    return true;
  }
  if (const Bounced* bounced = mail.Get<Bounced>()) {
    if (bounced->tag != 0) {
      Resolve(bounced->tag, StatusForDrop(bounced->to, bounced->reason));
      return true;
    }
    // A watch request that found nobody: the watched actor had ended.
    if (watching_.erase(bounced->to) == 0) return true;
    mail = Mail::Of(Terminated{bounced->to, std::nullopt});
    return false;
  }
  if (const WatchRequest* watch = mail.Get<WatchRequest>()) {
    watchers_.insert(watch->watcher);
    return true;
  }
  if (const UnwatchRequest* unwatch = mail.Get<UnwatchRequest>()) {
    watchers_.erase(unwatch->watcher);
    return true;
  }
  if (const Terminated* terminated = mail.Get<Terminated>()) {
    // Unwatched meanwhile (or never watched): not for the user.
    return watching_.erase(terminated->ref) == 0;
  }
  return false;
}

void ActorCell::Watch(ActorRef ref) {
  watching_.insert(ref);
  Mail request = Mail::Of(WatchRequest{self_});
  // Tag 0: a bounce of this request means "ended already" (TakeSystemMail).
  request.set_return_address(ReturnAddress{self_, 0});
  if (ref.valid() && ref.reactor == reactor_->index()) {
    reactor_->DeliverMailInLoop(ref, std::move(request), MailClass::kSystem);  // bounces if gone
    return;
  }
  if (!ref.valid() || ref.reactor >= reactor_->peer_count()) {
    DeliverToSelf(Mail::Of(Bounced{ref, 0, MailDrop::kInvalidRef}));
    return;
  }
  SendSystem(*reactor_, ref, std::move(request));
}

void ActorCell::Unwatch(ActorRef ref) {
  if (watching_.erase(ref) == 0) return;
  // So that a long-lived actor's list of watchers does not grow with every
  // short-lived one that ever watched it.
  SendSystem(*reactor_, ref, Mail::Of(UnwatchRequest{self_}));
}

void ActorCell::NotifyWatchers(CloseReason reason) {
  for (const ActorRef& watcher : watchers_) {
    SendSystem(*reactor_, watcher, Mail::Of(Terminated{self_, reason}));
  }
  watchers_.clear();
  for (const ActorRef& watched : watching_) {
    SendSystem(*reactor_, watched, Mail::Of(UnwatchRequest{self_}));
  }
  watching_.clear();
}

void ActorCell::BounceRequest(ReturnAddress address, ActorRef to, MailDrop reason) {
  if (!address.valid()) return;
  SendSystem(*reactor_, address.to, Mail::Of(Bounced{to, address.tag, reason}));
}

bool ActorCell::SendReply(ReturnAddress to, absl::StatusOr<Mail> reply) {
  if (!to.valid()) return false;
  if (current_request_.to == to.to && current_request_.tag == to.tag) current_request_ = {};
  Mail answer;
  if (reply.ok() && !reply->empty()) {
    answer = *std::move(reply);
    answer.set_return_address(ReturnAddress{kAskReplyMark, to.tag});
  } else {
    answer = Mail::Of(AskStatus{to.tag, reply.status()});
  }
  if (to.to.reactor == reactor_->index()) {
    return reactor_->DeliverMailInLoop(to.to, std::move(answer), MailClass::kSystem);
  }
  if (to.to.reactor >= reactor_->peer_count()) return false;
  return reactor_->peer(to.to.reactor).SendMail(to.to, std::move(answer), MailClass::kSystem);
}

void ActorCell::NewIncarnation() {
  ++incarnation_;
  next_result_ = next_seq_;  // nothing the old object asked for will run
  early_.reset();
  asks_.clear();
  due_.clear();
  watching_.clear();
  current_request_ = {};
  LeaveAllGroups();
}

void ActorCell::Join(std::string_view group) {
  for (const std::string& g : groups_) {
    if (g == group) return;
  }
  groups_.emplace_back(group);
  reactor_->Local<GroupShard>().members[std::string(group)].insert(self_);
}

void ActorCell::Leave(std::string_view group) {
  for (size_t i = 0; i < groups_.size(); ++i) {
    if (groups_[i] != group) continue;
    groups_.erase(groups_.begin() + static_cast<ptrdiff_t>(i));
    GroupShard& shard = reactor_->Local<GroupShard>();
    auto it = shard.members.find(std::string(group));
    if (it != shard.members.end()) {
      it->second.erase(self_);
      if (it->second.empty()) shard.members.erase(it);
    }
    return;
  }
}

void ActorCell::LeaveAllGroups() {
  if (groups_.empty()) return;
  GroupShard& shard = reactor_->Local<GroupShard>();
  for (const std::string& group : groups_) {
    auto it = shard.members.find(group);
    if (it == shard.members.end()) continue;
    it->second.erase(self_);
    if (it->second.empty()) shard.members.erase(it);
  }
  groups_.clear();
}

}  // namespace internal
}  // namespace troupe
