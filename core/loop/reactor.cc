#include "core/loop/reactor.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/check.h"
#include "core/base/deadline.h"
#include "core/base/log.h"
#include "core/loop/acceptor.h"
#include "core/net/socket.h"

namespace troupe {
namespace {

// epoll_event.data for the waker; connections use slot | generation << 32
// and generation is never 0, so the two never collide.
constexpr uint64_t kWakerToken = 0;
constexpr uint64_t kListenerToken = 1;  // the listener of AddListener
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

// Serves the requests connections queued on the host (read again, hand mail
// over): those queued so far, not those made while serving them, which wait
// for the next pass; so a connection that asks again from inside its own
// turn cannot spin the loop. `spare` is the walking copy, reused.
template <typename Serve>
void ServeRequests(std::vector<ConnectionId>& queued, std::vector<ConnectionId>& spare,
                   Serve serve) {
  if (queued.empty()) return;
  spare.clear();
  queued.swap(spare);
  for (const ConnectionId& id : spare) serve(id);
}

uint64_t PackToken(uint32_t slot, uint32_t generation) {
  return static_cast<uint64_t>(generation) << 32 | slot;
}

// An infinite (or absurdly long) idle timeout is no timeout: a deadline
// that far out would overflow the clock (core/base/deadline.h). Zero: none.
std::chrono::steady_clock::duration IdleTimeout(absl::Duration timeout) {
  if (!IsFiniteTimeout(timeout) || timeout > absl::Hours(24 * 365 * 100)) return {};
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      absl::ToChronoNanoseconds(timeout));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Reactor>> Reactor::Create(const ReactorOptions& options,
                                                         HandlerFactory factory) {
  TROUPE_CHECK(factory != nullptr, "Reactor needs a handler factory");
  Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) return absl::ErrnoToStatus(errno, "epoll_create1");
  absl::StatusOr<std::shared_ptr<Inbox>> inbox = Inbox::Create(options.inbox_mail_capacity);
  if (!inbox.ok()) return inbox.status();
  epoll_event event{};
  event.events = EPOLLIN;  // level-triggered: Consume() resets it
  event.data.u64 = kWakerToken;
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, (*inbox)->waker().fd(), &event) != 0) {
    return absl::ErrnoToStatus(errno, "epoll_ctl add eventfd");
  }
  return std::unique_ptr<Reactor>(
      new Reactor(options, std::move(factory), std::move(epoll), std::move(*inbox)));
}

Reactor::Reactor(const ReactorOptions& options, HandlerFactory factory, Fd epoll,
                 std::shared_ptr<Inbox> inbox)
    : options_(options),
      factory_(std::move(factory)),
      epoll_(std::move(epoll)),
      inbox_(std::move(inbox)),
      timers_(Timers::GeometryFor({options.idle_timeout, options.connection.flush_timeout,
                                   options.connection.linger_timeout}),
              Clock::now()),
      host_(options_.connection, IdleTimeout(options.idle_timeout), options.read_budget_bytes,
            timers_, counters_),
      table_(options.index),
      services_(options.index, kServiceSlot),
      stall_threshold_(IdleTimeout(options.stall_threshold)) {
  host_.set_bounce([this](ReturnAddress address, ConnectionId to, MailDrop reason) {
    BounceInLoop(address, to, reason);
  });
}

void Reactor::AddListener(Fd listen_fd, std::unique_ptr<Listener> listener,
                          ListenerOptions options) {
  TROUPE_CHECK(!listen_fd_.valid(), "Reactor::AddListener called twice");
  listen_fd_ = std::move(listen_fd);
  listener_ = std::move(listener);
  listener_options_ = std::move(options);
  UpdateListeningInLoop();  // before Run(): no other thread touches us yet
}

void Reactor::SetAcceptPaused(bool paused, Task done) {
  Post([this, paused, done = std::move(done)]() mutable {
    accept_held_ = paused;
    UpdateListeningInLoop();
    if (done) std::move(done)();
  });
}

void Reactor::UpdateListeningInLoop() {
  const bool want = listen_fd_.valid() && !accept_paused_ && !accept_full_ && !accept_held_ &&
                    !draining_ && !stopping_;
  if (want == listening_ || !listen_fd_.valid()) return;
  epoll_event event{};
  event.events = EPOLLIN;  // level-triggered: a paused backlog re-reports
  event.data.u64 = kListenerToken;
  ::epoll_ctl(epoll_.get(), want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, listen_fd_.get(), &event);
  listening_ = want;
}

void Reactor::AcceptInLoop() {
  // A bounded batch per turn keeps accepting from starving established
  // connections during a connect storm (64: libuv's and nginx's order of
  // magnitude for accepts per wake-up).
  constexpr int kMaxAcceptsPerTurn = 64;
  const size_t pause_at = listener_options_.pause_at_open;
  Handoff handoff;
  for (int i = 0; i < kMaxAcceptsPerTurn && listening_; ++i) {
    switch (listener_->AcceptOne(handoff)) {
      case Listener::Result::kAdmitted:
        if (listener_options_.dispatch) {
          listener_options_.dispatch(std::move(handoff));
        } else {
          AdoptInLoop(std::move(handoff));
        }
        if (pause_at > 0 && InboundEntries() >= pause_at) {
          accept_full_ = true;  // ReapInLoop resumes
          UpdateListeningInLoop();
        }
        break;
      case Listener::Result::kEmpty:
        return;
      case Listener::Result::kExhausted:
      case Listener::Result::kFailed:
        // Stop listening for a moment rather than spin on a full table.
        accept_paused_ = true;
        UpdateListeningInLoop();
        RunAfter(absl::Milliseconds(kExhaustedPauseMs), [this] {
          accept_paused_ = false;
          UpdateListeningInLoop();
        });
        return;
      case Listener::Result::kRejected:
        break;  // counts toward the batch: a connect flood cannot hold the loop
    }
  }
}

uint64_t Reactor::AdmittedCount() const {
  return listener_ != nullptr ? listener_->counters().accepted.load(std::memory_order_relaxed) : 0;
}

void Reactor::DropHandoff() {
  counters_.handoffs_dropped.fetch_add(1, std::memory_order_relaxed);  // two writers
}

// Connections are destroyed before the host and timers they point into
// (members are destroyed in reverse order: table_ goes first); sockets still
// queued in the inbox are closed by the inbox.
Reactor::~Reactor() = default;

void Reactor::StopNow() {
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

void Reactor::Adopt(HandoffToken& token, Handoff handoff) {
  const int fd = handoff.fd;
  if (!inbox_->Hand(token, std::move(handoff))) {
    ::close(fd);  // out of memory: shed this one connection, not the server
    DropHandoff();
  }
}

bool Reactor::HasQueuedWork() const {
  return inbox_->handoffs_approx() > 0 || inbox_->size_approx() > 0;
}

void Reactor::Run() {
  host_.BindToCurrentThread();
  if (options_.tag_log_lines) SetLogThreadReactor(static_cast<int>(options_.index));
  epoll_event events[kMaxEvents];
  while (!ShouldExitInLoop()) {
    int timeout_ms = ComputeTimeoutMs();
    const bool may_sleep =
        timeout_ms != 0 && inbox_->waker().PrepareToSleep([this] { return HasQueuedWork(); });
    if (!may_sleep) timeout_ms = 0;
    const int count = ::epoll_wait(epoll_.get(), events, kMaxEvents, timeout_ms);
    if (may_sleep) inbox_->waker().Awake();
    TROUPE_CHECK(count >= 0 || errno == EINTR, "epoll_wait failed");
    const Clock::time_point start = Clock::now();
    host_.set_now(start);
    ReactorCounters::Bump(counters_.loop_turns);
    HandleEventsInLoop(events, count);
    ProcessReadBacklogInLoop();
    AdoptHandoffsInLoop();
    RunInboxInLoop();
    RunTimersInLoop();
    RunMailboxesInLoop();
    ReapInLoop();
    RecordTurnInLoop(start);
  }
  listen_fd_.Reset();  // a listener of our own: refuse new connects at once
  listening_ = false;
  CloseAllInLoop(CloseReason::kShutdown);
  // Every entry is reaped before the table goes (a round may close more,
  // and a Connect() from a callback now fails at once, with Cancelled).
  do {
    ReapInLoop();
  } while (!host_.closing().empty());
  // Services last: every connection of the server is done by now (a drain
  // waits for all reactors), so none still waits for a service's answer.
  // An OnStop may spawn another service: stop those too (a bounded number
  // of rounds; any left are destroyed with the reactor).
  for (int round = 0; round < 64 && services_.size() > 0; ++round) {
    services_.ForEach([](Service& service) { service.Stop(CloseReason::kShutdown); });
    do {
      ReapInLoop();
    } while (!host_.closing().empty());
  }
}

void Reactor::RecordTurnInLoop(Clock::time_point start) {
  const Clock::duration took = Clock::now() - start;
  counters_.RecordTurn(std::chrono::duration_cast<std::chrono::nanoseconds>(took).count());
  if (stall_threshold_ > Clock::duration::zero() && took > stall_threshold_) {
    ReactorCounters::Bump(counters_.stalls);
    TROUPE_LOG_EVERY_SECOND(
        kWarning,
        "reactor stalled: one loop turn took %d ms (threshold %d ms); an actor blocked "
        "or computed on the loop",
        std::chrono::duration_cast<std::chrono::milliseconds>(took).count(),
        std::chrono::duration_cast<std::chrono::milliseconds>(stall_threshold_).count());
  }
}

void Reactor::HandleEventsInLoop(const epoll_event* events, int count) {
  for (int i = 0; i < count; ++i) {
    const uint64_t token = events[i].data.u64;
    if (token == kWakerToken) {
      inbox_->waker().Consume();
      continue;
    }
    if (token == kListenerToken) {
      AcceptInLoop();
      continue;
    }
    // A connection closed earlier in this batch may have left events
    // behind; its slot is not reused before the reap, and Find skips it.
    const ConnectionId id{options_.index, static_cast<uint32_t>(token),
                          static_cast<uint32_t>(token >> 32)};
    if (Connection* conn = Find(id)) conn->HandleEventsInLoop(events[i].events);
  }
}

bool Reactor::ShouldExitInLoop() {
  if (stopping_) return true;
  if (!draining_) return false;
  // A handoff still queued is a connection too: adopt it (AdoptInLoop reads
  // what it sent, then starts closing it) rather than leave it to the
  // destructor's reset.
  if (inbox_->handoffs_approx() > 0) AdoptHandoffsInLoop();
  if (Clock::now() >= drain_deadline_) {
    CloseAllInLoop(CloseReason::kShutdown);
    LeaveDrainInLoop();
    return true;
  }
  if (table_.size() > 0) return false;
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
  if (!host_.read_backlog().empty() || !host_.closing().empty() || !host_.mail_ready().empty()) {
    return 0;
  }
  Clock::time_point next = timers_.NextDue();
  if (draining_ && drain_deadline_ < next) next = drain_deadline_;
  if (next == Clock::time_point::max()) return -1;
  const auto now = Clock::now();
  if (next <= now) return 0;
  // Round up: waking a little late is fine, waking early spins.
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
  return ms > 60'000 ? 60'000 : static_cast<int>(ms);
}

void Reactor::ProcessReadBacklogInLoop() {
  ServeRequests(host_.read_backlog(), read_backlog_next_, [this](ConnectionId id) {
    if (Connection* conn = Find(id)) conn->ReadAgainInLoop();
  });
}

void Reactor::AdoptHandoffsInLoop() {
  if (inbox_->handoffs_approx() == 0) return;  // the common case: skip the batch array
  Handoff batch[kBulk];
  size_t count;
  while ((count = inbox_->TakeHandoffs(batch, kBulk)) > 0) {
    for (size_t i = 0; i < count; ++i) AdoptInLoop(std::move(batch[i]));
  }
}

void Reactor::AdoptInLoop(Handoff handoff) {
  Fd fd(handoff.fd);
  if (stopping_) {
    DropHandoff();
    return;  // closes fd
  }
  const ConnectionId id = table_.Reserve();
  epoll_event event{};
  event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  event.data.u64 = PackToken(id.slot, id.generation);
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &event) != 0) {
    TROUPE_LOG_EVERY_SECOND(kWarning, "epoll_ctl add for %s: %s; closing it",
                            handoff.peer.ToString(), std::strerror(errno));
    table_.Unreserve(id);
    DropHandoff();
    return;  // e.g. ENOMEM: shed this one connection
  }
  auto conn = std::make_unique<Connection>(host_, this, id, std::move(fd), std::move(handoff.peer));
  Connection& ref = *conn;
  table_.Put(id, std::move(conn));
  ReactorCounters::Bump(counters_.accepted);
  ref.set_handler(factory_(ref));
  TROUPE_CHECK(ref.handler() != nullptr, "HandlerFactory returned null");
  if (options_.transport != nullptr) {
    absl::StatusOr<std::unique_ptr<Transport>> transport = options_.transport->NewServerTransport();
    if (!transport.ok()) {
      // The handler never had OnOpen, so it hears nothing of this.
      TROUPE_LOG_EVERY_SECOND(kWarning, "closing %s: %s", ref.peer().ToString(),
                              std::string(transport.status().message()));
      ref.Close(CloseReason::kTlsError);
      return;
    }
    ref.set_transport_in_loop(*std::move(transport));
  }
  ref.OpenInLoop();
  if (draining_ && !ref.closed()) {
    // Accepted before accepting stopped (a takeover's last accepts, a late
    // handoff): what the client sent already is a request made to this
    // server, so it is read (and answered) before the close, as the drain's
    // one read does for the others. Closing first would leave it to the
    // lingering state, which reads only to discard.
    ref.ReadAgainInLoop();
    if (!ref.closed()) ref.CloseAfterFlush();
  }
}

ConnectionId Reactor::Connect(const Address& to, absl::Duration timeout,
                              std::unique_ptr<ConnectionHandler> handler,
                              ConnectCallback on_result) {
  AssertInLoopThread();
  TROUPE_CHECK(handler != nullptr, "Reactor::Connect needs a handler");
  ReactorCounters::Bump(counters_.connects);
  // Every attempt becomes a table entry, a failed one too: its result then
  // reaches the caller from the reap like any other failure, never inside
  // this call, and even when the loop is on its way out.
  absl::Status failed;
  CloseReason reason = CloseReason::kConnectFailed;
  Fd fd;
  const ConnectionId id = table_.Reserve();
  if (stopping_ || draining_) {
    failed =
        absl::CancelledError(absl::StrCat("connect ", to.ToString(), ": the reactor is stopping"));
    reason = CloseReason::kShutdown;
  } else if (absl::StatusOr<Fd> started = ConnectTcpNonBlocking(to); !started.ok()) {
    failed = std::move(started).status();
  } else {
    fd = std::move(*started);
    // The token scheme of accepted sockets: the completion is the first
    // EPOLLOUT (or EPOLLERR/EPOLLHUP) edge.
    epoll_event event{};
    event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    event.data.u64 = PackToken(id.slot, id.generation);
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &event) != 0) {
      failed =
          absl::ErrnoToStatus(errno, absl::StrCat("epoll_ctl add for connect ", to.ToString()));
      fd.Reset();
    }
  }
  auto conn = std::make_unique<Connection>(host_, this, id, std::move(fd), to);
  Connection& ref = *conn;
  table_.Put(id, std::move(conn));
  ++outbound_entries_;
  ref.set_handler(std::move(handler));
  ref.ConnectInLoop(timeout, std::move(on_result));
  if (!failed.ok()) ref.FailConnectInLoop(std::move(failed), reason);
  return id;
}

void Reactor::RunInboxInLoop() {
  if (inbox_->size_approx() == 0) return;  // the common case: skip the batch array
  Inbox::Item batch[kBulk];
  size_t handled = 0;
  size_t count;
  while (handled < kMaxInboxPerTurn && (count = inbox_->TakeItems(batch, kBulk)) > 0) {
    handled += count;
    size_t user_mail = 0;
    for (size_t i = 0; i < count; ++i) {
      Inbox::Item& item = batch[i];
      if (item.mail_class == MailClass::kUser) ++user_mail;
      if (!item.to.valid()) {
        // Mail queued before this task (from the same sender, say) is handed
        // over first: a task must not overtake mail sent before it. A
        // fan-out only queues mail behind it (TryPostFanOut), so fan-outs in
        // a row are handed over together.
        if (item.hand_over_first) RunMailboxesInLoop();
        std::move(item.task)();
        item.task = nullptr;
        ReactorCounters::Bump(counters_.tasks_run);
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
  Connection* conn = to.is_service() ? nullptr : Find(to);
  Service* service = to.is_service() ? FindService(to) : nullptr;
  if (conn == nullptr && service == nullptr) {
    const MailDrop reason =
        to.valid() && to.reactor == options_.index ? MailDrop::kGone : MailDrop::kInvalidRef;
    counters_.CountMailDrop(reason);
    host_.Bounce(mail, to, reason);
    return false;
  }
  // Drops at the mailbox are bounced there (ConnectionHost::Offer).
  std::optional<MailDrop> dropped = conn != nullptr
                                        ? conn->EnqueueMailInLoop(std::move(mail), mail_class)
                                        : service->EnqueueMailInLoop(std::move(mail), mail_class);
  if (dropped) {
    counters_.CountMailDrop(*dropped);
    return false;
  }
  return true;
}

void Reactor::BounceInLoop(ReturnAddress address, ConnectionId to, MailDrop reason) {
  ReactorCounters::Bump(counters_.mail_bounced);
  Mail bounced = Mail::Of(Bounced{to, address.tag, reason});
  // System mail: an asker is never refused its answer by a capacity. A
  // bounce carries no return address, so it never bounces itself.
  if (address.to.reactor == options_.index) {
    DeliverMailInLoop(address.to, std::move(bounced), MailClass::kSystem);
  } else if (address.to.reactor < peers_.size()) {
    peers_[address.to.reactor]->SendMail(address.to, std::move(bounced), MailClass::kSystem);
  }
}

Service* Reactor::FindService(ConnectionId id) {
  Service* service = services_.Find(id);
  return service != nullptr && !service->stopped() ? service : nullptr;
}

ConnectionId Reactor::SpawnService(std::unique_ptr<ServiceHandler> handler,
                                   const ServiceOptions& options) {
  // Before Run() nobody else touches the reactor: setup may act for it.
  if (host_.bound()) AssertInLoopThread();
  const ConnectionId id = services_.Reserve();
  services_.Put(id, std::make_unique<Service>(host_, this, id, options, std::move(handler)));
  ReactorCounters::Bump(counters_.services_started);
  return id;
}

void Reactor::RunMailboxesInLoop() {
  // One pass over the mailboxes that had mail when it began: mail sent
  // during the pass (an actor answering another on this reactor) waits for
  // the next pass, so two actors mailing each other cannot hold the loop;
  // ComputeTimeoutMs sees the host's mail_ready() and does not sleep meanwhile.
  ServeRequests(host_.mail_ready(), mail_ready_next_, [this](ConnectionId id) {
    if (id.is_service()) {
      if (Service* service = FindService(id)) service->HandOverMailInLoop(kMailPerActorPerPass);
    } else if (Connection* conn = Find(id)) {
      conn->HandOverMailInLoop(kMailPerActorPerPass);
    }
  });
}

void Reactor::RunAfter(absl::Duration delay, Task task) {
  AssertInLoopThread();
  timers_.RunAfter(Clock::now(), delay, std::move(task));
  counters_.timers.store(timers_.tasks(), std::memory_order_relaxed);
}

void Reactor::RunTimersInLoop() {
  // Deadlines are checked against the turn's clock, tasks against a fresh
  // read (a long turn must not delay a due task by a whole turn).
  timers_.RunDueTasks(Clock::now());
  timers_.ExpireDeadlines(host_.now(), [this](ConnectionId id) {
    if (Connection* conn = Find(id)) conn->DeadlineDueInLoop(host_.now());
  });
  counters_.timers.store(timers_.tasks(), std::memory_order_relaxed);
  counters_.deadline_entries.store(timers_.deadlines(), std::memory_order_relaxed);
}

Connection* Reactor::Find(ConnectionId id) {
  Connection* conn = table_.Find(id);
  return conn != nullptr && !conn->closed() ? conn : nullptr;
}

void Reactor::ReapInLoop() {
  // OnClose runs here, outside any other callback of the same handler, so a
  // handler never sees OnClose re-entered from inside its own Send().
  // An OnClose may close further connections (e.g. a group broadcast), so
  // go round again for those, a bounded number of times: a failed connect's
  // result callback that dials again at once (and fails at once again, say
  // out of descriptors) would otherwise hold the loop here for good. What
  // is left waits for the next turn (ComputeTimeoutMs sees it).
  constexpr int kMaxReapRounds = 64;
  std::vector<ConnectionHost::Closing>& closing = host_.closing();
  if (closing.empty()) return;
  for (int round = 0; round < kMaxReapRounds && !closing.empty(); ++round) {
    reaping_.swap(closing);
    for (const ConnectionHost::Closing& c : reaping_) {
      if (c.id.is_service()) {
        std::unique_ptr<Service> service = services_.Take(c.id);
        ReactorCounters::Bump(counters_.services_stopped);
        service->handler()->OnStop(*service, c.reason);
        continue;
      }
      std::unique_ptr<Connection> conn = table_.Take(c.id);
      if (conn->outbound()) --outbound_entries_;
      conn->FinishInLoop(c.reason);
    }
    reaping_.clear();
  }
  if (accept_full_ && InboundEntries() < listener_options_.pause_at_open) {
    accept_full_ = false;
    UpdateListeningInLoop();
  }
  counters_.deadline_entries.store(timers_.deadlines(), std::memory_order_relaxed);
}

void Reactor::BeginDrainInLoop(absl::Time deadline) {
  // Sockets already handed over are connections of this server too: adopted
  // before draining_ is set, they join the one read below like the others.
  AdoptHandoffsInLoop();
  draining_ = true;
  // A listener of our own: stop accepting (the Listener stays, since Stats()
  // may read its counters from any thread). Out of epoll first: closing our
  // descriptor does not remove it while another process holds the same
  // socket (one handed over, core/ops/handoff.h), and epoll would go on
  // reporting it under a closed number.
  if (listening_) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, listen_fd_.get(), nullptr);
  }
  listen_fd_.Reset();
  listening_ = false;
  // An infinite deadline stays infinite (DeadlineAfter saturates).
  drain_deadline_ = DeadlineAfter(Clock::now(), deadline - absl::Now());
  // Bytes that arrived before the drain began are requests made to this
  // server: answer them rather than discard them unread. It matters most for
  // a connection adopted this very turn (accepted just before accepting
  // stopped, as in a takeover, core/ops/handoff.h): nothing has read it yet.
  // One pass by id, since a handler may open or close entries meanwhile.
  std::vector<ConnectionId> open;
  table_.ForEach([&open](Connection& conn) {
    if (!conn.closed() && !conn.connecting()) open.push_back(conn.id());
  });
  for (ConnectionId id : open) {
    if (Connection* conn = Find(id)) conn->ReadAgainInLoop();
  }
  // An outbound connection still connecting has nothing to flush, and may
  // never open: it is cancelled (its result callback learns at the reap).
  table_.ForEach([](Connection& conn) {
    if (conn.connecting()) {
      conn.Close(CloseReason::kShutdown);
    } else if (!conn.closed()) {
      conn.CloseAfterFlush();
    }
  });
}

void Reactor::CloseAllInLoop(CloseReason reason) {
  table_.ForEach([reason](Connection& conn) {
    if (!conn.closed()) conn.Close(reason);
  });
}

ReactorStats Reactor::Stats() const {
  ReactorStats s = counters_.Snapshot();
  // The Derived rows of the table (core/loop/reactor_stats.h).
  s.open = s.accepted >= s.closed ? s.accepted - s.closed : 0;
  s.services =
      s.services_started >= s.services_stopped ? s.services_started - s.services_stopped : 0;
  s.outbound_open = s.connects >= s.outbound_closed ? s.connects - s.outbound_closed : 0;
  // Refusals at the inbox are counted there (their senders are other threads).
  s.mail_dropped_by_reason[static_cast<size_t>(MailDrop::kInboxFull)] += inbox_->refused_full();
  s.mail_dropped_by_reason[static_cast<size_t>(MailDrop::kInvalidRef)] += inbox_->invalid_refs();
  for (uint64_t n : s.mail_dropped_by_reason) s.mail_dropped += n;
  s.inbox_mail_depth = inbox_->mail_depth();
  s.inbox_mail_depth_max = inbox_->mail_depth_max();
  s.wake_writes = inbox_->waker().wake_writes();
  s.queue_depth = QueueDepth();
  if (listener_ != nullptr) {  // set before Run() and never replaced while running
    s.refused = listener_->counters().refused.load(std::memory_order_relaxed);
    s.rejected = listener_->counters().rejected.load(std::memory_order_relaxed);
  }
  return s;
}

}  // namespace troupe
