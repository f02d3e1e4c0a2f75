// Reactor: one epoll loop, owned by one thread, that owns its connections.
//
// Each turn of the loop runs these phases in a fixed order (after libuv):
//
//   1. epoll_wait   sleeps only if the Waker says no work was published
//   2. I/O events   read (up to a per-connection budget), write, close;
//                   an outbound connect completes (result callback, OnOpen)
//   3. read backlog connections whose budget ran out last turn read again
//   4. handoffs     new sockets from the acceptor, taken in bulk
//   5. inbox        posted tasks and mail from any thread, taken in bulk;
//                   after each batch, mailboxes with mail hand it over
//   6. timers       due RunAfter tasks run, then due deadlines (idle, flush,
//                   linger, connect: one per connection that has one) are
//                   checked
//   7. mailboxes    mail sent during this turn by actors of this reactor
//   8. reap         closed connections get OnClose (an outbound attempt that
//                   never opened: its result callback; a stopped service:
//                   OnStop), then are destroyed
//
// A turn longer than `stall_threshold` is a stall: counted and logged (an
// actor that blocks or computes on the loop delays every other actor here).
//
// Everything a connection touches happens on this thread; other threads reach
// a reactor only through its Inbox (core/loop/inbox.h): Adopt(), Post(),
// SendMail(), Drain() and StopNow() enqueue there and wake the loop.
//
// Connections come from two places and live in the one table: sockets the
// acceptor (or the reactor's own listener) hands over, and sockets an actor
// of this reactor dials out with Connect(). Both are served alike once open
// and both are closed by Drain() and StopNow(); they are counted apart
// (core/loop/reactor_stats.h), so dial-outs never use up max_connections.
//
// What the reactor is made of, each in its own file:
//   SlotTable        core/loop/connection_table.h  the connections: slots, generations
//   Service          core/loop/service.h           socketless entries (a second table)
//   ConnectionHost   core/loop/connection_host.h   the connections' one way back
//   Timers           core/loop/timers.h            RunAfter and per-entry deadlines
//   Inbox            core/loop/inbox.h             the cross-thread door
//   ReactorCounters  core/loop/reactor_stats.h     the counters, one table
//
//   auto reactor = Reactor::Create({.index = 0}, factory).value();
//   std::thread t([&] { reactor->Run(); });
//   reactor->Post([] { /* runs on the reactor thread */ });
//   reactor->StopNow();
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
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <typeindex>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/base/fd.h"
#include "core/loop/connection.h"
#include "core/loop/connection_host.h"
#include "core/loop/connection_table.h"
#include "core/loop/inbox.h"
#include "core/loop/mail.h"
#include "core/loop/mailbox.h"
#include "core/loop/reactor_stats.h"
#include "core/loop/service.h"
#include "core/loop/timers.h"

struct epoll_event;  // <sys/epoll.h>

namespace troupe {

// Creates the handler of each new connection. Called on the connection's
// reactor thread, so concurrently from several reactors: must be thread-safe.
using HandlerFactory = std::function<std::unique_ptr<ConnectionHandler>(Connection&)>;

struct ReactorOptions {
  uint32_t index = 0;
  ConnectionOptions connection;
  // Accepted connections get a transport of this factory (TLS,
  // core/net/tls.h) between their socket and their handler; null: plaintext.
  // Dialed-out ones (Connect) never do.
  std::shared_ptr<TransportFactory> transport;
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
  // Log lines from this thread say "reactor=<index>". Off for loops that
  // serve no connections of the server (the acceptor thread).
  bool tag_log_lines = true;
  // A turn longer than this is counted (stalls) and logged. 100 ms: far
  // beyond any healthy turn (microseconds), short enough to catch an actor
  // that blocks. Zero or infinite: never reported.
  absl::Duration stall_threshold = absl::Milliseconds(100);
};

// A listening socket a reactor accepts from itself (AddListener).
struct ListenerOptions {
  // Where each accepted socket goes: empty, adopted by this reactor
  // (reuse-port mode, the metrics endpoint); else handed to the callback
  // (the acceptor thread deals sockets out to the other reactors).
  absl::AnyInvocable<void(Handoff)> dispatch;
  // While this many connections are open here, stop accepting: the next
  // ones wait in the kernel's backlog until one closes. 0: never.
  size_t pause_at_open = 0;
};

class Listener;

class Reactor {
 public:
  using Task = absl::AnyInvocable<void() &&>;

  static absl::StatusOr<std::unique_ptr<Reactor>> Create(const ReactorOptions& options,
                                                         HandlerFactory factory);
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Runs the loop on the calling thread until StopNow(), or until Drain()
  // finishes. Call once.
  void Run();

  // Any thread. Closes every connection at once and ends Run() (what
  // Server::StopNow does to each reactor).
  void StopNow();
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
  // Any thread. TryPost for a task that only queues mail, through
  // DeliverMailInLoop (a broadcast's fan-out to this reactor's members). A
  // task from Post or TryPost runs only after the mail queued before it has
  // been handed over (it must not overtake that mail); this one need not
  // wait, since what it queues lands behind that mail in every mailbox
  // anyway. So fan-outs that arrive together reach each member as one
  // batch of mail, which its connection writes once.
  bool TryPostFanOut(Task task) { return inbox_->TryPostFanOut(std::move(task)); }
  // Any thread. Queues mail for connection `to`. Returns false (and counts
  // it) when `to` names no connection of this reactor or the inbox is full
  // of user mail; a true only means "accepted": if `to` is gone when the
  // mail arrives, or its mailbox is full, it is dropped and counted there.
  // Per-sender order is kept.
  bool SendMail(ConnectionId to, Mail mail, MailClass mail_class = MailClass::kUser);
  // Any thread. For producers that may outlive this reactor (offload
  // workers): lock() it for each send; a failed lock means the reactor is gone.
  std::weak_ptr<Inbox> inbox() const { return inbox_; }

  // This reactor accepts from `listen_fd` itself (reuse-port mode, the
  // acceptor thread, the metrics endpoint). Call before Run(). `listener`
  // wraps `listen_fd` (see core/loop/listener.h).
  void AddListener(Fd listen_fd, std::unique_ptr<Listener> listener, ListenerOptions options = {});
  // Any thread. An operator's pause of that listener (Server::PauseAccepting):
  // while paused it leaves the epoll set and new connections wait in the
  // kernel's backlog; independent of the loop's own pauses (descriptors ran
  // out, pause_at_open), so neither lifts the other. Takes effect on the
  // loop; `done`, if any, runs there right after (with no listener: at once
  // there too). Calls from one thread apply in order.
  void SetAcceptPaused(bool paused, Task done = nullptr);
  // Calls `f(const Connection&)` for every connection of this reactor
  // (connecting and closing ones included), in slot order: O(connections).
  // On the loop thread; `f` must not open or close connections.
  template <typename F>
  void ForEachConnectionInLoop(F&& f) {
    AssertInLoopThread();
    table_.ForEach([&f](const Connection& conn) { f(conn); });
  }

  // Any thread (the acceptor). One token per producing thread.
  HandoffToken MakeHandoffToken() { return inbox_->MakeHandoffToken(); }
  // Any thread (the acceptor). Takes ownership of `handoff.fd`.
  void Adopt(HandoffToken& token, Handoff handoff);

  // Dials `to` from this reactor (from a handler or a task running here):
  // a non-blocking connect() on a new socket (TCP_NODELAY, like accepted
  // ones) served, once open, by a Connection like any accepted one, with
  // `handler`. Never blocks; returns the id the connection has (valid even
  // when the attempt already failed: it then names nothing by the time the
  // result comes, and never another connection).
  //
  // `on_result` is called exactly once, on this thread, never inside this
  // call: with the id when the connection opens (before the handler's
  // OnOpen; in the I/O phase), or at the reap with why it never opened: the
  // errno text of socket() or connect(), naming `to` (kConnectFailed);
  // DeadlineExceeded after `timeout` (kConnectTimeout; zero, negative or
  // infinite: no timeout of ours); Cancelled for Close() while connecting,
  // and for an attempt while the reactor drains or stops (kShutdown: do not
  // dial again from that result). A connection that never opened gets no
  // handler call at all. The timeout is the connection's one TimerWheel
  // deadline, so it fires up to a wheel tick late. Send() before the open
  // queues; mail waits for it.
  ConnectionId Connect(const Address& to, absl::Duration timeout,
                       std::unique_ptr<ConnectionHandler> handler, ConnectCallback on_result);

  // The live connection with this id (connecting ones included), or nullptr.
  Connection* Find(ConnectionId id);
  // The live service with this id, or nullptr.
  Service* FindService(ConnectionId id);
  // Creates a service (an entry with no socket, core/loop/service.h) and
  // returns its id at once; its OnStart runs in this reactor's next mailbox
  // phase. On the loop thread, or before Run() from the thread setting the
  // reactor up (the server's, before Start()).
  ConnectionId SpawnService(std::unique_ptr<ServiceHandler> handler,
                            const ServiceOptions& options = {});
  // Counts one event in a counter of this reactor's table (the layers above
  // core: service restarts, Ask timeouts).
  void CountInLoop(std::atomic<uint64_t> ReactorCounters::*counter, uint64_t n = 1) {
    ReactorCounters::Bump(counters_.*counter, n);
  }
  // Puts `mail` in connection `to`'s mailbox (from a task or an actor on
  // this reactor); it is handed over in the mailbox phase, never inline.
  // False, counted, if `to` is gone or its mailbox refused the mail.
  bool DeliverMailInLoop(ConnectionId to, Mail mail, MailClass mail_class = MailClass::kUser);
  // An actor dropped output for a peer that was behind (counted).
  void CountShedInLoop() { ReactorCounters::Bump(counters_.frames_shed); }
  // A send from this reactor named no actor (counted here).
  void CountInvalidRefInLoop() { counters_.CountMailDrop(MailDrop::kInvalidRef); }
  // Mail a handler had to drop (e.g. before its actor exists), by reason.
  void CountMailDropInLoop(MailDrop reason) { counters_.CountMailDrop(reason); }

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
  // core (e.g. the actor directory's local members). Setup code may use it
  // before Run() binds the loop thread.
  template <typename T>
  T& Local() {
    if (host_.bound()) AssertInLoopThread();
    std::shared_ptr<void>& slot = locals_[std::type_index(typeid(T))];
    if (slot == nullptr) slot = std::make_shared<T>();
    return *static_cast<T*>(slot.get());
  }
  // Runs `task` on this reactor after `delay`. O(log n) in pending timers.
  void RunAfter(absl::Duration delay, Task task);

  uint32_t index() const { return options_.index; }
  // Any thread.
  ReactorStats Stats() const;
  // Any thread. Connections this reactor has adopted so far (accepted ones;
  // Connect()'s are counted apart, in Stats().connects).
  uint64_t AcceptedCount() const { return counters_.accepted.load(std::memory_order_relaxed); }
  // Any thread. Accepted connections this reactor has closed so far, plus
  // sockets handed to it that it had to close before adopting them (so that
  // "admitted - closed" is the number open, which max_connections gates;
  // outbound connections are in neither).
  uint64_t ClosedCount() const {
    return counters_.closed.load(std::memory_order_relaxed) +
           counters_.handoffs_dropped.load(std::memory_order_relaxed);
  }
  // Any thread. With a listener of its own: connections it admitted.
  uint64_t AdmittedCount() const;
  // Any thread. Handoffs and inbox items not yet drained (approximate).
  size_t QueueDepth() const { return inbox_->handoffs_approx() + inbox_->size_approx(); }

  // Any thread.
  bool IsInLoopThread() const { return host_.IsInLoopThread(); }
  void AssertInLoopThread() const { host_.AssertInLoopThread(); }

 private:
  using Clock = std::chrono::steady_clock;

  Reactor(const ReactorOptions& options, HandlerFactory factory, Fd epoll,
          std::shared_ptr<Inbox> inbox);

  bool HasQueuedWork() const;
  int ComputeTimeoutMs();
  // The phases of one turn, in order (see the header comment).
  void HandleEventsInLoop(const ::epoll_event* events, int count);
  void ProcessReadBacklogInLoop();
  void AdoptHandoffsInLoop();
  void RunInboxInLoop();
  void RunTimersInLoop();
  void RunMailboxesInLoop();
  void ReapInLoop();

  void DropHandoff();
  void AdoptInLoop(Handoff handoff);
  // Entries of the table that were accepted (pause_at_open counts these).
  size_t InboundEntries() const { return table_.size() - outbound_entries_; }
  void AcceptInLoop();
  // Puts the listener in the epoll set, or takes it out, as the pauses say.
  void UpdateListeningInLoop();
  void BeginDrainInLoop(absl::Time deadline);
  void CloseAllInLoop(CloseReason reason);
  // Tells the asker of a dropped request (Bounced, core/loop/mailbox.h).
  void BounceInLoop(ReturnAddress address, ConnectionId to, MailDrop reason);
  void RecordTurnInLoop(Clock::time_point start);
  bool ShouldExitInLoop();
  void LeaveDrainInLoop();

  const ReactorOptions options_;
  const HandlerFactory factory_;
  Fd epoll_;
  // The cross-thread door (handoffs, tasks, mail, and the Waker); shared so
  // late producers can hold a weak_ptr (see core/loop/inbox.h).
  std::shared_ptr<Inbox> inbox_;
  ReactorCounters counters_;  // read by Stats() from any thread

  std::vector<Reactor*> peers_;              // fixed before Run(); read-only after
  std::atomic<int>* drain_group_ = nullptr;  // the server's; outlives us
  bool left_drain_ = false;
  Fd listen_fd_;                        // with a listener only (AddListener)
  std::unique_ptr<Listener> listener_;  // with a listener only
  ListenerOptions listener_options_;
  bool listening_ = false;      // the listener is in the epoll set
  bool accept_paused_ = false;  // descriptors ran out: resumes by timer
  bool accept_full_ = false;    // pause_at_open reached: resumes at a reap
  bool accept_held_ = false;    // SetAcceptPaused(true): resumes when told

  // Loop-thread state. Connections (table_) are destroyed before the host
  // and timers they point into.
  Timers timers_;                          // RunAfter tasks and connection deadlines
  ConnectionHost host_;                    // what connections may ask of us
  SlotTable<Connection> table_;            // the connections, by slot
  SlotTable<Service> services_;            // the services, by slot | kServiceSlot
  const Clock::duration stall_threshold_;  // zero: not reported
  size_t outbound_entries_ = 0;            // of table_, those from Connect()
  // Each phase swaps the host's request list with its spare and walks that,
  // so requests made while it runs wait for the next pass.
  std::vector<ConnectionId> read_backlog_next_;
  std::vector<ConnectionId> mail_ready_next_;
  std::vector<ConnectionHost::Closing> reaping_;
  bool stopping_ = false;
  bool draining_ = false;
  Clock::time_point drain_deadline_{};
  // Last on purpose: Abseil's containers change size under AddressSanitizer,
  // and a program built without it may link a sanitized library; any field
  // after this one would then sit at two different offsets, and inline
  // accessors compiled on either side would disagree. The table is empty by
  // the time it is destroyed (Run reaps every connection).
  absl::flat_hash_map<std::type_index, std::shared_ptr<void>> locals_;
};

}  // namespace troupe
