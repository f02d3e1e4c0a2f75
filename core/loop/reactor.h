// Reactor: one epoll loop, owned by one thread, that owns its connections.
//
// Each turn of the loop runs these phases in a fixed order (after libuv):
//
//   1. epoll_wait   sleeps only if the Waker says no work was published
//   2. I/O events   read (up to a per-connection budget), write, close
//   3. read backlog connections whose budget ran out last turn read again
//   4. handoffs     new sockets from the acceptor, drained in bulk
//   5. inbox        posted tasks and mail from any thread, drained in bulk;
//                   after each batch, mailboxes with mail hand it over
//   6. timers       due timers run
//   7. deadlines    idle, flush and linger deadlines (one wheel entry per
//                   connection that has one)
//   8. mailboxes    mail sent during this turn by actors of this reactor
//   9. reap         closed connections get OnClose, then are destroyed
//
// Everything a connection touches happens on this thread; other threads reach
// a reactor only through Adopt(), Post(), SendMail(), Drain() and Stop(),
// which enqueue onto lock-free queues and wake the loop (core/loop/waker.h).
//
//   auto reactor = Reactor::Create({.index = 0}, factory).value();
//   std::thread t([&] { reactor->Run(); });
//   reactor->Post([] { /* runs on the reactor thread */ });
//   reactor->Stop();
//   t.join();
//
// Epoll mode: edge-triggered, registered once per connection for
// IN|OUT|RDHUP. Edge-triggered lets a connection stay registered for EPOLLOUT
// without a wake-up storm, so backpressure and partial writes need no
// epoll_ctl calls at all; the price is that a reader must drain the socket
// (or remember to come back: the read backlog).
//
// Thread safety: loop-affine (owning reactor); methods marked "Any thread."
// are safe anywhere.
#pragma once

#include <atomic>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <thread>
#include <typeindex>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "concurrentqueue/concurrentqueue.h"
#include "core/net/address.h"
#include "core/loop/connection.h"
#include "core/base/fd.h"
#include "core/loop/inbox.h"
#include "core/loop/mail.h"
#include "core/loop/mailbox.h"
#include "core/loop/timer_wheel.h"
#include "core/loop/waker.h"

namespace troupe {

// Creates the handler of each new connection. Called on the connection's
// reactor thread, so concurrently from several reactors: must be thread-safe.
using HandlerFactory =
    std::function<std::unique_ptr<ConnectionHandler>(Connection&)>;

struct ReactorOptions {
  uint32_t index = 0;
  ConnectionOptions connection;
  // Bytes read from one connection per turn before others get a go. 256 KiB
  // is four scratch-buffer reads: large enough that a bulk stream still
  // moves in big reads, small enough that 1,000 such streams cannot starve a
  // ping-pong peer for long.
  size_t read_budget_bytes = 256 * 1024;
  // Close connections with no bytes in either direction for this long
  // (CloseReason::kIdleTimeout). Zero or infinite: never.
  absl::Duration idle_timeout = absl::ZeroDuration();
  // User mail waiting in the inbox beyond this is refused (core/loop/inbox.h).
  size_t inbox_mail_capacity = Inbox::kDefaultMailCapacity;
};

// A socket on its way from the acceptor to a reactor.
struct Handoff {
  int fd = -1;
  Address peer;
};

// A point-in-time copy of a reactor's counters.
struct ReactorStats {
  uint64_t accepted = 0;
  uint64_t closed = 0;
  uint64_t open = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t mail_delivered = 0;
  uint64_t mail_dropped = 0;  // every reason below, summed
  std::array<uint64_t, static_cast<size_t>(MailDrop::kCount)> mail_dropped_by_reason{};
  uint64_t frames_shed = 0;       // output an actor dropped for a peer that was behind
  uint64_t handoffs_dropped = 0;  // sockets closed before they became connections
  uint64_t mailbox_depth = 0;     // mail waiting in this reactor's mailboxes now
  uint64_t mailbox_depth_max = 0;  // the most ever waiting in one mailbox
  uint64_t inbox_mail_depth = 0;  // user mail waiting in the inbox now
  uint64_t inbox_mail_depth_max = 0;
  uint64_t deadline_entries = 0;  // connections with an idle/flush/linger deadline
  uint64_t timers = 0;            // RunAfter timers pending
  uint64_t tasks_run = 0;
  uint64_t loop_turns = 0;
  uint64_t wake_writes = 0;
  uint64_t queue_depth = 0;  // handoffs + inbox items waiting (approximate)
  uint64_t refused = 0;      // reuse-port mode: shed, descriptors ran out
  uint64_t rejected = 0;     // reuse-port mode: closed at once, max_connections
  std::array<uint64_t, static_cast<size_t>(CloseReason::kCount)> closed_by_reason{};
  // Loop-turn latency: time from epoll_wait's return to the end of the turn.
  static constexpr std::array<int64_t, 9> kTurnBucketsUs = {
      10, 50, 100, 500, 1000, 5000, 10000, 50000, 100000};
  // turn_buckets[i]: turns that took <= kTurnBucketsUs[i] (cumulative, as
  // Prometheus wants); the last entry counts every turn (+Inf).
  std::array<uint64_t, kTurnBucketsUs.size() + 1> turn_buckets{};
  uint64_t turn_sum_ns = 0;
};

class Admission;

class Reactor {
 public:
  using Task = absl::AnyInvocable<void() &&>;

  static absl::StatusOr<std::unique_ptr<Reactor>> Create(
      const ReactorOptions& options, HandlerFactory factory);
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Runs the loop on the calling thread until Stop(), or until Drain()
  // finishes. Call once.
  void Run();

  // Any thread. Closes every connection at once and ends Run().
  void Stop();
  // Any thread. Stops taking new work, adopts the handoffs already queued,
  // closes every connection with CloseAfterFlush (which waits for the
  // replies its handler still owes), and ends Run() when none is left (and,
  // in a drain group, when every reactor of the group has none left) or at
  // `deadline`, when the rest are closed with CloseReason::kShutdown.
  void Drain(absl::Time deadline);

  // Any thread. Queues `task` to run on this reactor; never runs it inline.
  void Post(Task task);
  // Any thread. Post for a task that carries user mail (a broadcast's
  // fan-out): refused, counted as inbox_full, when the inbox is full.
  bool TryPost(Task task) { return inbox_->TryPost(std::move(task)); }
  // Any thread. Queues mail for connection `to`. Returns false (and counts
  // it) when `to` names no connection of this reactor or the inbox is full
  // of user mail; a true only means "accepted": if `to` is gone when the
  // mail arrives, or its mailbox is full, it is dropped and counted there.
  // Per-sender order is kept.
  bool SendMail(ConnectionId to, Mail mail, MailClass mail_class = MailClass::kUser);
  // Any thread. For producers that may outlive this reactor (offload
  // workers): lock() it for each send; a failed lock means the reactor is gone.
  std::weak_ptr<Inbox> inbox() const { return inbox_; }

  // Reuse-port mode: this reactor accepts from its own SO_REUSEPORT listener
  // instead of taking handoffs. Call before Run(). `admission` wraps
  // `listen_fd` (see core/loop/acceptor.h).
  void AddListener(Fd listen_fd, std::unique_ptr<Admission> admission);

  // Any thread (the acceptor). One token per producing thread.
  moodycamel::ProducerToken MakeHandoffToken() {
    return moodycamel::ProducerToken(handoffs_);
  }
  // Any thread (the acceptor). Takes ownership of `handoff.fd`.
  void Adopt(moodycamel::ProducerToken& token, Handoff handoff);

  // The live connection with this id, or nullptr.
  Connection* Find(ConnectionId id);
  // Puts `mail` in connection `to`'s mailbox (from a task or an actor on
  // this reactor); it is handed over in the mailbox phase, never inline.
  // False, counted, if `to` is gone or its mailbox refused the mail.
  bool DeliverMailInLoop(ConnectionId to, Mail mail, MailClass mail_class = MailClass::kUser);
  // An actor dropped output for a peer that was behind (counted).
  void CountShedInLoop() { Bump(frames_shed_); }
  // A send from this reactor named no actor (counted here).
  void CountInvalidRefInLoop() { CountMailDrop(MailDrop::kInvalidRef); }

  // Every reactor of the same server, by index (this one included), so that
  // code on one reactor can Post or SendMail to another. Set before Run().
  void set_peers(std::vector<Reactor*> peers) { peers_ = std::move(peers); }
  // Reactors draining together (Server::Stop): each stays until the count,
  // which starts at the number of reactors, reaches zero. Set before Run().
  void set_drain_group(std::atomic<int>* group) { drain_group_ = group; }
  Reactor& peer(uint32_t index) const { return *peers_.at(index); }
  size_t peer_count() const { return peers_.size(); }

  // Per-reactor state of type T, created on first use (default-constructed)
  // and destroyed with the reactor: shared-nothing storage for layers above
  // core (e.g. the actor directory's local members).
  template <typename T>
  T& Local() {
    AssertInLoopThread();
    std::shared_ptr<void>& slot = locals_[std::type_index(typeid(T))];
    if (slot == nullptr) slot = std::make_shared<T>();
    return *static_cast<T*>(slot.get());
  }
  // Runs `task` on this reactor after `delay`. O(log n) in pending timers.
  void RunAfter(absl::Duration delay, Task task);

  uint32_t index() const { return options_.index; }
  // Any thread.
  ReactorStats Stats() const;
  // Any thread. Connections this reactor has adopted so far.
  uint64_t AcceptedCount() const { return accepted_.load(std::memory_order_relaxed); }
  // Any thread. Connections this reactor has closed so far, plus sockets
  // handed to it that it had to close before adopting them (so that
  // "admitted - closed" is the number open, which max_connections gates).
  uint64_t ClosedCount() const {
    return closed_.load(std::memory_order_relaxed) +
           handoffs_dropped_.load(std::memory_order_relaxed);
  }
  // Any thread. Reuse-port mode: connections its own listener admitted.
  uint64_t AdmittedCount() const;
  // Any thread. Handoffs and inbox items not yet drained (approximate).
  size_t QueueDepth() const {
    return handoffs_.size_approx() + inbox_->size_approx();
  }

  bool IsInLoopThread() const {
    return loop_thread_.load(std::memory_order_relaxed) ==
           std::this_thread::get_id();
  }
  void AssertInLoopThread() const;

 private:
  friend class Connection;
  using Clock = std::chrono::steady_clock;

  struct Slot {
    std::unique_ptr<Connection> connection;
    uint32_t generation = 1;
  };
  struct Timer {
    Clock::time_point when;
    uint64_t sequence;  // FIFO among equal deadlines
    mutable Task task;  // mutable: std::priority_queue::top() is const
    bool operator>(const Timer& other) const {
      return when != other.when ? when > other.when : sequence > other.sequence;
    }
  };
  struct Closing {
    ConnectionId id;
    CloseReason reason;
  };

  Reactor(const ReactorOptions& options, HandlerFactory factory, Fd epoll,
          std::shared_ptr<Inbox> inbox);

  bool HasQueuedWork() const;
  int ComputeTimeoutMs();
  void HandleEventsInLoop(int count);
  void ProcessReadBacklogInLoop();
  void DrainHandoffsInLoop();
  void DrainInboxInLoop();
  void RunTimersInLoop();
  void RunMailboxesInLoop();
  void ReapInLoop();
  void DropHandoff();
  void AdoptInLoop(Handoff handoff);
  void AcceptInLoop();
  void SetListeningInLoop(bool on);
  void BeginDrainInLoop(absl::Time deadline);
  void CloseAllInLoop(CloseReason reason);
  bool ShouldExitInLoop();
  void LeaveDrainInLoop();

  // Called by Connection.
  char* scratch() { return scratch_.get(); }
  // The time this turn's events were taken (one clock read per turn).
  Clock::time_point now() const { return now_; }
  void RecordTurnInLoop(Clock::time_point end);
  void ExpireDeadlinesInLoop();
  static constexpr size_t kScratchBytes = 64 * 1024;
  void ScheduleReadInLoop(Connection& conn);
  // Puts `conn`'s earliest deadline (idle, flush or linger) on the wheel.
  void ScheduleDeadlineInLoop(Connection& conn);
  void ScheduleMailInLoop(Connection& conn);
  void CountMailDrop(MailDrop reason, uint64_t n = 1) {
    Bump(mail_dropped_[static_cast<size_t>(reason)], n);
  }
  void MailboxDepthChanged(int64_t delta, size_t one_mailbox);
  void OnClosedInLoop(Connection& conn, CloseReason reason);
  void CountBytesIn(size_t n) { Bump(bytes_in_, n); }
  void CountBytesOut(size_t n) { Bump(bytes_out_, n); }
  const ConnectionOptions& connection_options() const { return options_.connection; }
  size_t read_budget() const { return options_.read_budget_bytes; }

  // Counters have one writer (this thread), so a relaxed load+store is
  // enough and costs no locked instruction; readers may be anywhere.
  static void Bump(std::atomic<uint64_t>& counter, uint64_t n = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + n,
                  std::memory_order_relaxed);
  }

  const ReactorOptions options_;
  const HandlerFactory factory_;
  Fd epoll_;
  // The cross-thread door (tasks, mail, and the Waker the handoffs use too);
  // shared so late producers can hold a weak_ptr (see core/loop/inbox.h).
  std::shared_ptr<Inbox> inbox_;
  std::atomic<std::thread::id> loop_thread_{};

  // The acceptor's handoffs (single producer, with a token); tasks and mail
  // come through inbox_.
  moodycamel::ConcurrentQueue<Handoff> handoffs_;

  std::vector<Reactor*> peers_;  // fixed before Run(); read-only after
  std::atomic<int>* drain_group_ = nullptr;  // the server's; outlives us
  bool left_drain_ = false;
  Fd listen_fd_;                          // reuse-port mode only
  std::unique_ptr<Admission> admission_;  // reuse-port mode only

  // Loop-thread state.
  absl::flat_hash_map<std::type_index, std::shared_ptr<void>> locals_;
  std::unique_ptr<char[]> scratch_;       // shared read buffer, kScratchBytes
  std::vector<Slot> slots_;               // connection table
  std::vector<uint32_t> free_slots_;      // reusable indexes into slots_
  std::vector<ConnectionId> read_backlog_;  // budget ran out; read again
  std::vector<ConnectionId> read_backlog_next_;
  std::vector<Closing> closing_;          // closed this turn; reaped at its end
  std::vector<Closing> reaping_;          // the batch ReapInLoop is working on
  std::vector<ConnectionId> mail_ready_;  // mailboxes with mail to hand over
  std::vector<ConnectionId> mail_ready_next_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  uint64_t timer_sequence_ = 0;
  size_t live_connections_ = 0;
  Clock::time_point now_ = Clock::now();
  TimerWheel deadlines_;                  // idle, flush and linger deadlines
  Clock::duration idle_timeout_{};        // zero: off
  int64_t mailbox_depth_now_ = 0;
  bool stopping_ = false;
  bool draining_ = false;
  Clock::time_point drain_deadline_{};

  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> closed_{0};
  std::atomic<uint64_t> bytes_in_{0};
  std::atomic<uint64_t> bytes_out_{0};
  std::atomic<uint64_t> mail_delivered_{0};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(MailDrop::kCount)> mail_dropped_{};
  std::atomic<uint64_t> frames_shed_{0};
  std::atomic<uint64_t> handoffs_dropped_{0};  // two writers: fetch_add
  std::atomic<uint64_t> mailbox_depth_{0};
  std::atomic<uint64_t> mailbox_depth_max_{0};
  std::atomic<uint64_t> deadline_entries_{0};
  std::atomic<uint64_t> timer_count_{0};
  std::atomic<uint64_t> tasks_run_{0};
  std::atomic<uint64_t> loop_turns_{0};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(CloseReason::kCount)>
      closed_by_reason_{};
  std::array<std::atomic<uint64_t>, ReactorStats::kTurnBucketsUs.size() + 1> turn_buckets_{};
  std::atomic<uint64_t> turn_sum_ns_{0};
};

}  // namespace troupe
