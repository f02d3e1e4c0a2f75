#include "core/loop/reactor.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "core/loop/acceptor.h"
#include "core/base/check.h"
#include "core/base/deadline.h"
#include "core/base/log.h"

namespace troupe {
namespace {

// epoll_event.data for the waker; connections use slot | generation << 32
// and generation is never 0, so the two never collide.
constexpr uint64_t kWakerToken = 0;
constexpr uint64_t kListenerToken = 1;  // reuse-port mode's own listener
// Events taken from one epoll_wait. 256 keeps the array on the stack small
// while a loaded reactor still sees many ready sockets per syscall.
constexpr int kMaxEvents = 256;
// Inbox items and handoffs dequeued per bulk call (moodycamel's bulk
// dequeue amortises its per-call cost over the batch).
constexpr size_t kBulk = 64;
// Inbox items handled per turn before I/O gets another go: a flood of mail
// must not starve the sockets. Leftovers keep epoll_wait from sleeping.
constexpr size_t kMaxInboxPerTurn = 4096;
// Mails handed to one actor per mailbox pass: a flood to one actor waits its
// turn instead of holding the loop. A pass takes only what was waiting when
// it reached the actor, so an actor that mails itself cannot spin a turn.
constexpr size_t kMailPerActorPerPass = 256;

// The deadline wheel's geometry for a reactor's timeouts: an eighth of the
// shortest finite one per tick (1 ms..1 s), so deadlines fire at most ~12%
// late and a reactor with waiting deadlines wakes at most once per tick; the
// span covers the longest (4,096 slots at most; later deadlines wrap and are
// rescheduled when they come round).
TimerWheel::Geometry GeometryFor(std::initializer_list<absl::Duration> timeouts) {
  using std::chrono::steady_clock;
  steady_clock::duration shortest = std::chrono::seconds(8);
  steady_clock::duration longest = std::chrono::seconds(8);
  bool any = false;
  for (absl::Duration d : timeouts) {
    if (!IsFiniteTimeout(d) || d > absl::Hours(24 * 365)) continue;
    const auto ns = std::chrono::duration_cast<steady_clock::duration>(absl::ToChronoNanoseconds(d));
    shortest = any ? std::min(shortest, ns) : ns;
    longest = any ? std::max(longest, ns) : ns;
    any = true;
  }
  const auto tick = std::clamp<steady_clock::duration>(shortest / 8, std::chrono::milliseconds(1),
                                                       std::chrono::seconds(1));
  return {tick, std::min<size_t>(static_cast<size_t>(longest / tick) + 2, 4096)};
}

uint64_t PackToken(uint32_t slot, uint32_t generation) {
  return static_cast<uint64_t>(generation) << 32 | slot;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Reactor>> Reactor::Create(
    const ReactorOptions& options, HandlerFactory factory) {
  TROUPE_CHECK(factory != nullptr, "Reactor needs a handler factory");
  Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) return absl::ErrnoToStatus(errno, "epoll_create1");
  absl::StatusOr<std::shared_ptr<Inbox>> inbox = Inbox::Create(options.inbox_mail_capacity);
  if (!inbox.ok()) return inbox.status();
  epoll_event event{};
  event.events = EPOLLIN;  // level-triggered: Drain() resets it
  event.data.u64 = kWakerToken;
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, (*inbox)->waker().fd(), &event) != 0) {
    return absl::ErrnoToStatus(errno, "epoll_ctl add eventfd");
  }
  return std::unique_ptr<Reactor>(new Reactor(
      options, std::move(factory), std::move(epoll), std::move(*inbox)));
}

Reactor::Reactor(const ReactorOptions& options, HandlerFactory factory, Fd epoll,
                 std::shared_ptr<Inbox> inbox)
    : options_(options),
      factory_(std::move(factory)),
      epoll_(std::move(epoll)),
      inbox_(std::move(inbox)),
      scratch_(new char[kScratchBytes]),
      deadlines_(GeometryFor({options.idle_timeout, options.connection.flush_timeout,
                              options.connection.linger_timeout}),
                 Clock::now()) {
  // An infinite (or absurdly long) idle timeout is no timeout: a deadline
  // that far out would overflow the clock (core/base/deadline.h).
  if (IsFiniteTimeout(options_.idle_timeout) && options_.idle_timeout <= absl::Hours(24 * 365 * 100)) {
    idle_timeout_ = std::chrono::duration_cast<Clock::duration>(
        absl::ToChronoNanoseconds(options_.idle_timeout));
  }
}

void Reactor::AddListener(Fd listen_fd, std::unique_ptr<Admission> admission) {
  TROUPE_CHECK(!listen_fd_.valid(), "Reactor::AddListener called twice");
  listen_fd_ = std::move(listen_fd);
  admission_ = std::move(admission);
  SetListeningInLoop(true);  // before Run(): no other thread touches us yet
}

void Reactor::SetListeningInLoop(bool on) {
  if (!listen_fd_.valid()) return;
  epoll_event event{};
  event.events = EPOLLIN;  // level-triggered: a paused backlog re-reports
  event.data.u64 = kListenerToken;
  ::epoll_ctl(epoll_.get(), on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, listen_fd_.get(), &event);
}

void Reactor::AcceptInLoop() {
  // A bounded batch per turn keeps accepting from starving established
  // connections during a connect storm (64: libuv's and nginx's order of
  // magnitude for accepts per wake-up).
  constexpr int kMaxAcceptsPerTurn = 64;
  Handoff handoff;
  for (int i = 0; i < kMaxAcceptsPerTurn && listen_fd_.valid(); ++i) {
    switch (admission_->AcceptOne(handoff)) {
      case Admission::Result::kAdmitted:
        AdoptInLoop(std::move(handoff));
        break;
      case Admission::Result::kEmpty:
        return;
      case Admission::Result::kExhausted:
      case Admission::Result::kFailed:
        // Stop listening for a moment rather than spin on a full table.
        SetListeningInLoop(false);
        RunAfter(absl::Milliseconds(kExhaustedPauseMs), [this] {
          if (!draining_ && !stopping_) SetListeningInLoop(true);
        });
        return;
      case Admission::Result::kRejected:
        break;  // counts toward the batch: a connect flood cannot hold the loop
    }
  }
}

uint64_t Reactor::AdmittedCount() const {
  return admission_ != nullptr ? admission_->counters().accepted.load(std::memory_order_relaxed)
                               : 0;
}

void Reactor::DropHandoff() { handoffs_dropped_.fetch_add(1, std::memory_order_relaxed); }

Reactor::~Reactor() {
  // Sockets handed over but never adopted (Run never started, or ended
  // first) are still ours to close.
  Handoff handoff;
  while (handoffs_.try_dequeue(handoff)) ::close(handoff.fd);
}

void Reactor::AssertInLoopThread() const {
  TROUPE_CHECK(IsInLoopThread(),
               "called a loop-affine Reactor method off its loop thread");
}

void Reactor::Stop() {
  Post([this] { stopping_ = true; });
}

void Reactor::Drain(absl::Time deadline) {
  Post([this, deadline] { BeginDrainInLoop(deadline); });
}

void Reactor::Post(Task task) { inbox_->Post(std::move(task)); }

bool Reactor::SendMail(ConnectionId to, Mail mail, MailClass mail_class) {
  if (!to.valid() || to.reactor != options_.index) {
    inbox_->CountInvalidRef();  // a bad ref is dropped and counted, never fatal
    return false;
  }
  return inbox_->SendMail(to, std::move(mail), mail_class);
}

void Reactor::Adopt(moodycamel::ProducerToken& token, Handoff handoff) {
  const int fd = handoff.fd;
  if (!handoffs_.enqueue(token, std::move(handoff))) {
    ::close(fd);  // out of memory: shed this one connection, not the server
    DropHandoff();
    return;
  }
  inbox_->waker().Notify();
}

bool Reactor::HasQueuedWork() const {
  return handoffs_.size_approx() > 0 || inbox_->size_approx() > 0;
}

void Reactor::Run() {
  loop_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  SetLogThreadReactor(static_cast<int>(options_.index));
  epoll_event events[kMaxEvents];
  while (!ShouldExitInLoop()) {
    int timeout_ms = ComputeTimeoutMs();
    const bool may_sleep =
        timeout_ms != 0 &&
        inbox_->waker().PrepareToSleep([this] { return HasQueuedWork(); });
    if (!may_sleep) timeout_ms = 0;
    const int count = ::epoll_wait(epoll_.get(), events, kMaxEvents, timeout_ms);
    if (may_sleep) inbox_->waker().Awake();
    TROUPE_CHECK(count >= 0 || errno == EINTR, "epoll_wait failed");
    now_ = Clock::now();
    Bump(loop_turns_);
    if (count > 0) {
      for (int i = 0; i < count; ++i) {
        const uint64_t token = events[i].data.u64;
        if (token == kWakerToken) {
          inbox_->waker().Drain();
          continue;
        }
        if (token == kListenerToken) {
          AcceptInLoop();
          continue;
        }
        const uint32_t slot = static_cast<uint32_t>(token);
        const uint32_t generation = static_cast<uint32_t>(token >> 32);
        // A connection closed earlier in this batch may have left events
        // behind; its slot is not reused before the reap, and the state
        // check skips it.
        Connection* conn = slots_[slot].connection.get();
        if (conn == nullptr || slots_[slot].generation != generation ||
            conn->closed()) {
          continue;
        }
        conn->HandleEventsInLoop(events[i].events);
      }
    }
    ProcessReadBacklogInLoop();
    DrainHandoffsInLoop();
    DrainInboxInLoop();
    RunTimersInLoop();
    ExpireDeadlinesInLoop();
    RunMailboxesInLoop();
    ReapInLoop();
    RecordTurnInLoop(Clock::now());
  }
  listen_fd_.Reset();  // reuse-port mode: refuse new connects at once
  CloseAllInLoop(CloseReason::kShutdown);
  ReapInLoop();
}

bool Reactor::ShouldExitInLoop() {
  if (stopping_) return true;
  if (!draining_) return false;
  // A handoff still queued is a connection too: adopt it (it starts
  // closing at once) rather than leave it to the destructor's reset.
  if (handoffs_.size_approx() > 0) DrainHandoffsInLoop();
  if (Clock::now() >= drain_deadline_) {
    CloseAllInLoop(CloseReason::kShutdown);
    LeaveDrainInLoop();
    return true;
  }
  if (live_connections_ > 0) return false;
  // Done here, but a connection on another reactor may still await a reply
  // from a task it posts here (a sharded store): stay, serving the inbox,
  // until every reactor of the drain is done (or the deadline).
  LeaveDrainInLoop();
  return drain_group_ == nullptr || drain_group_->load(std::memory_order_acquire) == 0;
}

void Reactor::LeaveDrainInLoop() {
  if (left_drain_ || drain_group_ == nullptr) return;
  left_drain_ = true;
  if (drain_group_->fetch_sub(1, std::memory_order_acq_rel) == 1) {
    // The last one out wakes those waiting for it.
    for (Reactor* peer : peers_) {
      if (peer != this) peer->Post([] {});
    }
  }
}

int Reactor::ComputeTimeoutMs() {
  if (!read_backlog_.empty() || !closing_.empty() || !mail_ready_.empty()) return 0;
  Clock::time_point next = Clock::time_point::max();
  if (!timers_.empty()) next = timers_.top().when;
  if (deadlines_.NextDue() < next) next = deadlines_.NextDue();
  if (draining_ && drain_deadline_ < next) next = drain_deadline_;
  if (next == Clock::time_point::max()) return -1;
  const auto now = Clock::now();
  if (next <= now) return 0;
  // Round up: waking a little late is fine, waking early spins.
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
  return ms > 60'000 ? 60'000 : static_cast<int>(ms);
}

void Reactor::ProcessReadBacklogInLoop() {
  if (read_backlog_.empty()) return;
  read_backlog_next_.clear();
  read_backlog_.swap(read_backlog_next_);
  for (const ConnectionId& id : read_backlog_next_) {
    Connection* conn = Find(id);
    if (conn == nullptr) continue;
    conn->in_read_backlog_ = false;
    // The edge was consumed earlier, so read until EAGAIN this time.
    if (conn->ReadInLoop(read_budget(), /*until_eagain=*/true)) {
      ScheduleReadInLoop(*conn);
    }
  }
}

void Reactor::ScheduleReadInLoop(Connection& conn) {
  if (conn.in_read_backlog_) return;
  conn.in_read_backlog_ = true;
  read_backlog_.push_back(conn.id());
}

void Reactor::DrainHandoffsInLoop() {
  if (handoffs_.size_approx() == 0) return;  // the common case: skip the batch array
  Handoff batch[kBulk];
  size_t count;
  while ((count = handoffs_.try_dequeue_bulk(batch, kBulk)) > 0) {
    for (size_t i = 0; i < count; ++i) AdoptInLoop(std::move(batch[i]));
  }
}

void Reactor::AdoptInLoop(Handoff handoff) {
  Fd fd(handoff.fd);
  if (stopping_) {
    DropHandoff();
    return;  // closes fd
  }
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  const ConnectionId id{options_.index, slot, slots_[slot].generation};
  epoll_event event{};
  event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  event.data.u64 = PackToken(slot, id.generation);
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &event) != 0) {
    TROUPE_LOG_EVERY_SECOND(kWarning, "epoll_ctl add for %s: %s; closing it",
                            handoff.peer.ToString(), std::strerror(errno));
    free_slots_.push_back(slot);
    DropHandoff();
    return;  // e.g. ENOMEM: shed this one connection
  }
  auto conn = std::make_unique<Connection>(*this, id, std::move(fd),
                                           std::move(handoff.peer),
                                           options_.connection);
  Connection& ref = *conn;
  ref.last_active_ = now_;
  slots_[slot].connection = std::move(conn);
  ScheduleDeadlineInLoop(ref);
  ++live_connections_;
  Bump(accepted_);
  ref.set_handler(factory_(ref));
  TROUPE_CHECK(ref.handler() != nullptr, "HandlerFactory returned null");
  ref.OpenInLoop();
  if (draining_ && !ref.closed()) ref.CloseAfterFlush();
}

void Reactor::DrainInboxInLoop() {
  if (inbox_->size_approx() == 0) return;  // the common case: skip the batch array
  Inbox::Item batch[kBulk];
  size_t handled = 0;
  size_t count;
  while (handled < kMaxInboxPerTurn &&
         (count = inbox_->queue().try_dequeue_bulk(batch, kBulk)) > 0) {
    handled += count;
    size_t user_mail = 0;
    for (size_t i = 0; i < count; ++i) {
      Inbox::Item& item = batch[i];
      if (item.mail_class == MailClass::kUser) ++user_mail;
      if (!item.to.valid()) {
        // Mail queued before this task (from the same sender, say) is handed
        // over first: a task must not overtake mail sent before it.
        RunMailboxesInLoop();
        std::move(item.task)();
        item.task = nullptr;
        Bump(tasks_run_);
        continue;
      }
      DeliverMailInLoop(item.to, std::move(item.mail), item.mail_class);
      item.mail = Mail();
    }
    inbox_->MailTaken(user_mail);
    // Hand this batch's mail over before taking more: a burst of up to
    // kMaxInboxPerTurn mails to one actor then never meets a full mailbox
    // while the actor could have taken it.
    RunMailboxesInLoop();
  }
}

bool Reactor::DeliverMailInLoop(ConnectionId to, Mail mail, MailClass mail_class) {
  AssertInLoopThread();
  Connection* conn = Find(to);
  if (conn == nullptr) {
    CountMailDrop(to.valid() && to.reactor == options_.index ? MailDrop::kGone
                                                             : MailDrop::kInvalidRef);
    return false;
  }
  if (std::optional<MailDrop> dropped = conn->EnqueueMailInLoop(std::move(mail), mail_class)) {
    CountMailDrop(*dropped);
    return false;
  }
  return true;
}

void Reactor::ScheduleMailInLoop(Connection& conn) {
  if (conn.in_mail_ready_) return;
  conn.in_mail_ready_ = true;
  mail_ready_.push_back(conn.id());
}

void Reactor::MailboxDepthChanged(int64_t delta, size_t one_mailbox) {
  mailbox_depth_now_ += delta;
  mailbox_depth_.store(static_cast<uint64_t>(std::max<int64_t>(mailbox_depth_now_, 0)),
                       std::memory_order_relaxed);
  if (one_mailbox > mailbox_depth_max_.load(std::memory_order_relaxed)) {
    mailbox_depth_max_.store(one_mailbox, std::memory_order_relaxed);
  }
}

void Reactor::RunMailboxesInLoop() {
  // One pass over the mailboxes that had mail when it began: mail sent
  // during the pass (an actor answering another on this reactor) waits for
  // the next pass, so two actors mailing each other cannot hold the loop;
  // ComputeTimeoutMs sees mail_ready_ and does not sleep meanwhile.
  if (mail_ready_.empty()) return;
  mail_ready_next_.clear();
  mail_ready_.swap(mail_ready_next_);
  for (const ConnectionId& id : mail_ready_next_) {
    Connection* conn = Find(id);
    if (conn == nullptr) continue;
    conn->in_mail_ready_ = false;
    if (conn->DeliverMailInLoop(kMailPerActorPerPass)) ScheduleMailInLoop(*conn);
  }
}

void Reactor::RunAfter(absl::Duration delay, Task task) {
  AssertInLoopThread();
  const auto when = DeadlineAfter(Clock::now(), delay);
  timers_.push(Timer{when, timer_sequence_++, std::move(task)});
  timer_count_.store(timers_.size(), std::memory_order_relaxed);
}

void Reactor::RunTimersInLoop() {
  if (timers_.empty()) return;
  const auto now = Clock::now();
  while (!timers_.empty() && timers_.top().when <= now) {
    Task task = std::move(timers_.top().task);
    timers_.pop();
    std::move(task)();
  }
  timer_count_.store(timers_.size(), std::memory_order_relaxed);
}

void Reactor::ScheduleDeadlineInLoop(Connection& conn) {
  const Clock::time_point deadline = conn.DeadlineInLoop(idle_timeout_);
  if (deadline == Clock::time_point::max()) {
    deadlines_.Cancel(conn.id());
  } else {
    deadlines_.Schedule(conn.id(), deadline);
  }
  deadline_entries_.store(deadlines_.size(), std::memory_order_relaxed);
}

void Reactor::ExpireDeadlinesInLoop() {
  // Even when empty: Advance keeps the cursor at now in O(1), so a deadline
  // scheduled after a long quiet spell is placed from the present.
  deadlines_.Advance(now_, [&](ConnectionId id) {
    Connection* conn = Find(id);
    if (conn == nullptr) return;  // closed connections cancel their entry
    conn->CheckDeadlinesInLoop(now_, idle_timeout_);
    if (!conn->closed()) ScheduleDeadlineInLoop(*conn);
  });
  deadline_entries_.store(deadlines_.size(), std::memory_order_relaxed);
}

void Reactor::RecordTurnInLoop(Clock::time_point end) {
  const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(end - now_).count();
  Bump(turn_sum_ns_, static_cast<uint64_t>(ns));
  const int64_t us = ns / 1000;
  for (size_t i = 0; i < ReactorStats::kTurnBucketsUs.size(); ++i) {
    if (us <= ReactorStats::kTurnBucketsUs[i]) Bump(turn_buckets_[i]);
  }
  Bump(turn_buckets_.back());
}

Connection* Reactor::Find(ConnectionId id) {
  if (id.reactor != options_.index || id.slot >= slots_.size()) return nullptr;
  Slot& slot = slots_[id.slot];
  if (slot.generation != id.generation || slot.connection == nullptr ||
      slot.connection->closed()) {
    return nullptr;
  }
  return slot.connection.get();
}

void Reactor::OnClosedInLoop(Connection& conn, CloseReason reason) {
  deadlines_.Cancel(conn.id());
  deadline_entries_.store(deadlines_.size(), std::memory_order_relaxed);
  closing_.push_back(Closing{conn.id(), reason});
  Bump(closed_);
  Bump(closed_by_reason_[static_cast<size_t>(reason)]);
  --live_connections_;
}

void Reactor::ReapInLoop() {
  // OnClose runs here, outside any other callback of the same handler, so a
  // handler never sees OnClose re-entered from inside its own Send().
  // An OnClose may close further connections (e.g. a group broadcast), so
  // loop until nothing is left.
  while (!closing_.empty()) {
    reaping_.swap(closing_);
    for (const Closing& c : reaping_) {
      Slot& slot = slots_[c.id.slot];
      std::unique_ptr<Connection> conn = std::move(slot.connection);
      if (conn->handler() != nullptr) conn->handler()->OnClose(*conn, c.reason);
      conn.reset();
      if (++slot.generation == 0) slot.generation = 1;  // 0 means "none"
      free_slots_.push_back(c.id.slot);
    }
    reaping_.clear();
  }
}

void Reactor::BeginDrainInLoop(absl::Time deadline) {
  draining_ = true;
  // Reuse-port mode: stop accepting (closing the listener leaves epoll; the
  // Admission stays, since Stats() may read its counters from any thread).
  listen_fd_.Reset();
  // An infinite deadline stays infinite (DeadlineAfter saturates).
  drain_deadline_ = DeadlineAfter(Clock::now(), deadline - absl::Now());
  // Sockets already handed over are connections of this server too.
  DrainHandoffsInLoop();
  for (Slot& slot : slots_) {
    if (slot.connection != nullptr && !slot.connection->closed()) {
      slot.connection->CloseAfterFlush();
    }
  }
}

void Reactor::CloseAllInLoop(CloseReason reason) {
  for (Slot& slot : slots_) {
    if (slot.connection != nullptr && !slot.connection->closed()) {
      slot.connection->Close(reason);
    }
  }
}

ReactorStats Reactor::Stats() const {
  ReactorStats s;
  s.accepted = accepted_.load(std::memory_order_relaxed);
  s.closed = closed_.load(std::memory_order_relaxed);
  s.open = s.accepted >= s.closed ? s.accepted - s.closed : 0;
  s.bytes_in = bytes_in_.load(std::memory_order_relaxed);
  s.bytes_out = bytes_out_.load(std::memory_order_relaxed);
  s.mail_delivered = mail_delivered_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < s.mail_dropped_by_reason.size(); ++i) {
    s.mail_dropped_by_reason[i] = mail_dropped_[i].load(std::memory_order_relaxed);
  }
  // Refusals at the inbox are counted there (their senders are other threads).
  s.mail_dropped_by_reason[static_cast<size_t>(MailDrop::kInboxFull)] += inbox_->refused_full();
  s.mail_dropped_by_reason[static_cast<size_t>(MailDrop::kInvalidRef)] += inbox_->invalid_refs();
  for (uint64_t n : s.mail_dropped_by_reason) s.mail_dropped += n;
  s.frames_shed = frames_shed_.load(std::memory_order_relaxed);
  s.handoffs_dropped = handoffs_dropped_.load(std::memory_order_relaxed);
  s.mailbox_depth = mailbox_depth_.load(std::memory_order_relaxed);
  s.mailbox_depth_max = mailbox_depth_max_.load(std::memory_order_relaxed);
  s.inbox_mail_depth = inbox_->mail_depth();
  s.inbox_mail_depth_max = inbox_->mail_depth_max();
  s.deadline_entries = deadline_entries_.load(std::memory_order_relaxed);
  s.timers = timer_count_.load(std::memory_order_relaxed);
  s.tasks_run = tasks_run_.load(std::memory_order_relaxed);
  s.loop_turns = loop_turns_.load(std::memory_order_relaxed);
  s.wake_writes = inbox_->waker().wake_writes();
  s.queue_depth = QueueDepth();
  if (admission_ != nullptr) {  // set before Run() and never replaced while running
    s.refused = admission_->counters().refused.load(std::memory_order_relaxed);
    s.rejected = admission_->counters().rejected.load(std::memory_order_relaxed);
  }
  for (size_t i = 0; i < s.closed_by_reason.size(); ++i) {
    s.closed_by_reason[i] = closed_by_reason_[i].load(std::memory_order_relaxed);
  }
  for (size_t i = 0; i < s.turn_buckets.size(); ++i) {
    s.turn_buckets[i] = turn_buckets_[i].load(std::memory_order_relaxed);
  }
  s.turn_sum_ns = turn_sum_ns_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace troupe
