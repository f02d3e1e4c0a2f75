#include "core/reactor.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "core/acceptor.h"
#include "core/check.h"
#include "core/log.h"

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

uint64_t PackToken(uint32_t slot, uint32_t generation) {
  return static_cast<uint64_t>(generation) << 32 | slot;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Reactor>> Reactor::Create(
    const ReactorOptions& options, HandlerFactory factory) {
  TROUPE_CHECK(factory != nullptr, "Reactor needs a handler factory");
  Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) return absl::ErrnoToStatus(errno, "epoll_create1");
  absl::StatusOr<std::shared_ptr<Inbox>> inbox = Inbox::Create();
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
      scratch_(new char[kScratchBytes]) {
  if (options_.idle_timeout > absl::ZeroDuration()) {
    // An eighth of the timeout per tick (1 ms..1 s): connections close at
    // most ~12% late, and an idle reactor wakes at most once per tick.
    const auto timeout = absl::ToChronoNanoseconds(options_.idle_timeout);
    auto tick = std::clamp<Clock::duration>(timeout / 8, std::chrono::milliseconds(1),
                                            std::chrono::seconds(1));
    const size_t slots = std::min<size_t>(timeout / tick + 2, 4096);
    idle_wheel_.emplace(tick, slots, Clock::now());
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
    }
  }
}

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

void Reactor::SendMail(ConnectionId to, Mail mail) {
  TROUPE_CHECK(to.valid(), "SendMail to an invalid ConnectionId");
  inbox_->SendMail(to, std::move(mail));
}

void Reactor::Adopt(moodycamel::ProducerToken& token, Handoff handoff) {
  const int fd = handoff.fd;
  if (!handoffs_.enqueue(token, std::move(handoff))) {
    ::close(fd);  // out of memory: shed this one connection, not the server
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
    ExpireIdleInLoop();
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
  if (live_connections_ == 0) return true;
  if (Clock::now() >= drain_deadline_) {
    CloseAllInLoop(CloseReason::kShutdown);
    return true;
  }
  return false;
}

int Reactor::ComputeTimeoutMs() {
  if (!read_backlog_.empty() || !closing_.empty()) return 0;
  Clock::time_point next = Clock::time_point::max();
  if (!timers_.empty()) next = timers_.top().when;
  if (idle_wheel_ && idle_wheel_->NextDue() < next) next = idle_wheel_->NextDue();
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
  if (stopping_) return;  // closes fd
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
    free_slots_.push_back(slot);
    return;  // e.g. ENOMEM: shed this one connection
  }
  auto conn = std::make_unique<Connection>(*this, id, std::move(fd),
                                           std::move(handoff.peer),
                                           options_.connection);
  Connection& ref = *conn;
  ref.last_active_ = now_;
  if (idle_wheel_) idle_wheel_->Schedule(id, now_ + absl::ToChronoNanoseconds(options_.idle_timeout));
  slots_[slot].connection = std::move(conn);
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
    for (size_t i = 0; i < count; ++i) {
      Inbox::Item& item = batch[i];
      if (!item.to.valid()) {
        std::move(item.task)();
        item.task = nullptr;
        Bump(tasks_run_);
        continue;
      }
      DeliverMailInLoop(item.to, std::move(item.mail));
      item.mail = Mail();
    }
  }
}

void Reactor::DeliverMailInLoop(ConnectionId to, Mail mail) {
  Connection* conn = Find(to);
  if (conn == nullptr) {
    Bump(mail_dropped_);
    return;
  }
  Bump(mail_delivered_);
  conn->DeliverMailInLoop(std::move(mail));
}

void Reactor::RunAfter(absl::Duration delay, Task task) {
  AssertInLoopThread();
  const auto when = Clock::now() + absl::ToChronoNanoseconds(delay);
  timers_.push(Timer{when, timer_sequence_++, std::move(task)});
}

void Reactor::RunTimersInLoop() {
  if (timers_.empty()) return;
  const auto now = Clock::now();
  while (!timers_.empty() && timers_.top().when <= now) {
    Task task = std::move(timers_.top().task);
    timers_.pop();
    std::move(task)();
  }
}

void Reactor::ExpireIdleInLoop() {
  if (!idle_wheel_) return;
  const auto timeout = absl::ToChronoNanoseconds(options_.idle_timeout);
  idle_wheel_->Advance(now_, [&](ConnectionId id) {
    Connection* conn = Find(id);
    if (conn == nullptr) return;  // closed meanwhile: its entry just drops
    const Clock::time_point deadline = conn->last_active_ + timeout;
    if (deadline <= now_) {
      conn->Close(CloseReason::kIdleTimeout);
    } else {
      idle_wheel_->Schedule(id, deadline);
    }
  });
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
  const absl::Duration left = deadline - absl::Now();
  drain_deadline_ = Clock::now() + absl::ToChronoNanoseconds(
                                       left < absl::ZeroDuration()
                                           ? absl::ZeroDuration()
                                           : left);
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
  s.mail_dropped = mail_dropped_.load(std::memory_order_relaxed);
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
