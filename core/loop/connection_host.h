// ConnectionHost: everything a Connection may ask of the reactor that owns
// it, and nothing more. It is the seam that keeps the dependency one way:
//
//   Reactor ──owns──► SlotTable<Connection> ──owns──► Connection
//      │                                            │
//      └──owns──► ConnectionHost ◄──public calls────┘
//
// The reactor drives connections through their public loop entry points
// (HandleEventsInLoop, ReadAgainInLoop, ...); a connection reaches back only
// through this class: the per-turn clock and shared read buffer, its
// deadline on the reactor's Timers, the counters, and three requests the
// reactor serves in later phases of the same turn (read again, hand over
// mail, reap). A connection never sees the Reactor's internals, and the
// Reactor never writes a connection's fields. Services (core/loop/
// service.h), the socketless entries, reach the reactor through it too.
// Mail either kind drops (evicted, or waiting when it closes) is handed to
// Bounce(), so a request's asker hears of it (core/loop/mail.h).
//
//   host.ReadAgain(id);               // budget ran out: phase 3 reads again
//   host.timers().SetDeadline(id, t);
//   host.Closed(id, reason, false);   // counted; reaped at the end of the turn
//
// Thread safety: loop-affine (owning reactor).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "core/base/check.h"
#include "core/loop/close_reason.h"
#include "core/loop/connection_id.h"
#include "core/loop/mail.h"
#include "core/loop/mailbox.h"
#include "core/loop/reactor_stats.h"
#include "core/loop/timers.h"

namespace troupe {

struct ConnectionOptions;

class ConnectionHost {
 public:
  using Clock = std::chrono::steady_clock;
  // The shared read buffer: every connection of the reactor reads into it
  // first, so a connection between messages owns no input memory.
  static constexpr size_t kScratchBytes = 64 * 1024;

  struct Closing {
    ConnectionId id;
    CloseReason reason;
  };

  ConnectionHost(const ConnectionOptions& options, Clock::duration idle_timeout, size_t read_budget,
                 Timers& timers, ReactorCounters& counters)
      : options_(options),
        idle_timeout_(idle_timeout),
        read_budget_(read_budget),
        timers_(timers),
        counters_(counters),
        scratch_(new char[kScratchBytes]),
        cork_bytes_(new char[kCorkBytes]) {
    cork_.data = cork_bytes_.get();
  }

  // The loop thread. Set by the reactor's Run().
  void BindToCurrentThread() {
    loop_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  }
  bool IsInLoopThread() const {  // Any thread.
    return loop_thread_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }
  // False until Run() binds the loop thread: setup code (spawning services
  // before the server starts) may then act for it.
  bool bound() const { return loop_thread_.load(std::memory_order_relaxed) != std::thread::id{}; }
  void AssertInLoopThread() const {
    TROUPE_CHECK(IsInLoopThread(), "called a loop-affine method off its loop thread");
  }

  // The time this turn's events were taken (one clock read per turn).
  Clock::time_point now() const { return now_; }
  void set_now(Clock::time_point now) { now_ = now; }
  char* scratch() { return scratch_.get(); }
  // The shared cork: while a handler's callback runs (OnData, a mail
  // hand-over), the Sends it makes gather here and leave in one write when
  // the callback returns (Connection::Send). Lent to one connection at a
  // time; callbacks do not nest, and a connection that finds it lent writes
  // through as if uncorked.
  static constexpr size_t kCorkBytes = 64 * 1024;
  struct Cork {
    char* data = nullptr;
    size_t size = 0;  // bytes gathered
    bool lent = false;
  };
  Cork& cork() { return cork_; }
  const Cork& cork() const { return cork_; }
  const ConnectionOptions& options() const { return options_; }
  // Zero: connections have no idle timeout.
  Clock::duration idle_timeout() const { return idle_timeout_; }
  // Bytes read from one connection per turn before others get a go.
  size_t read_budget() const { return read_budget_; }
  Timers& timers() { return timers_; }
  ReactorCounters& counters() { return counters_; }

  // `id` stopped reading with its budget spent (or paused with bytes maybe
  // left): read it again next turn (phase 3). The caller dedupes.
  void ReadAgain(ConnectionId id) { read_backlog_.push_back(id); }
  // `id` has mail waiting: hand it over in the mailbox phase. The caller dedupes.
  void MailReady(ConnectionId id) { mail_ready_.push_back(id); }
  // `id` is closed: clears its deadline, counts the reason (`outbound`: it
  // came from Reactor::Connect, counted apart), and queues it for the reap at
  // the end of the turn (OnClose, or a failed connect's result, runs there).
  void Closed(ConnectionId id, CloseReason reason, bool outbound) {
    timers_.ClearDeadline(id);
    counters_.CountClose(reason, outbound);
    closing_.push_back(Closing{id, reason});
  }
  // Service `id` stopped: queued for the reap (its OnStop runs there). Not a
  // connection close, so not counted as one.
  void ServiceStopped(ConnectionId id, CloseReason reason) {
    closing_.push_back(Closing{id, reason});
  }
  // `mail`, meant for `to`, was dropped for `reason`: if it is a request,
  // its asker is told (Bounced). Set by the reactor; a test's host has none.
  using BounceFn = absl::AnyInvocable<void(ReturnAddress, ConnectionId, MailDrop)>;
  void set_bounce(BounceFn bounce) { bounce_ = std::move(bounce); }
  void Bounce(const Mail& mail, ConnectionId to, MailDrop reason) {
    const ReturnAddress address = mail.return_address();
    if (address.valid() && bounce_) bounce_(address, to, reason);
  }
  // The intake every entry's mailbox shares (Connection and Service): queues
  // `mail` for `to` under the policy, counting and bouncing what is
  // dropped. nullopt: queued (the caller schedules the hand-over); else why
  // it was dropped. kActorClosed: the policy is kCloseActor and the caller
  // must close the entry.
  std::optional<MailDrop> Offer(Mailbox& box, ConnectionId to, Mail mail, MailClass mail_class,
                                size_t capacity, MailboxOverflow policy);
  // Drops every mail waiting in `box` (its entry closed), counted as
  // `reason` and bounced.
  void DropWaiting(Mailbox& box, ConnectionId to, MailDrop reason);
  // A mailbox grew or shrank by `delta`; `one_mailbox` is its size now.
  void MailboxDepthChanged(int64_t delta, size_t one_mailbox) {
    mailbox_depth_ += delta;
    counters_.mailbox_depth.store(static_cast<uint64_t>(mailbox_depth_ > 0 ? mailbox_depth_ : 0),
                                  std::memory_order_relaxed);
    if (one_mailbox > counters_.mailbox_depth_max.load(std::memory_order_relaxed)) {
      counters_.mailbox_depth_max.store(one_mailbox, std::memory_order_relaxed);
    }
  }

  // The reactor's side: the requests queued so far this turn.
  std::vector<ConnectionId>& read_backlog() { return read_backlog_; }
  std::vector<ConnectionId>& mail_ready() { return mail_ready_; }
  std::vector<Closing>& closing() { return closing_; }

 private:
  const ConnectionOptions& options_;  // the reactor's; outlives us
  const Clock::duration idle_timeout_;
  const size_t read_budget_;
  Timers& timers_;
  ReactorCounters& counters_;
  std::unique_ptr<char[]> scratch_;
  std::unique_ptr<char[]> cork_bytes_;
  Cork cork_;
  std::atomic<std::thread::id> loop_thread_{};
  Clock::time_point now_ = Clock::now();
  int64_t mailbox_depth_ = 0;
  BounceFn bounce_;
  std::vector<ConnectionId> read_backlog_;
  std::vector<ConnectionId> mail_ready_;
  std::vector<Closing> closing_;
};

}  // namespace troupe
