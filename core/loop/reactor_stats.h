// The table of a reactor's counters: each one is declared once, in
// TROUPE_REACTOR_COUNTERS below, and from that one line come its live atomic
// (ReactorCounters), its field in the copy-out (ReactorStats), how a server
// sums its reactors (ReactorStats::Add) and its /metrics family
// (core/ops/metrics_server.cc walks kReactorCounterInfo). Adding a counter
// is one line here plus the code that bumps it. (The X-macro is the idiom of
// LLVM's .def files: one list, expanded several ways.)
//
//   ReactorCounters counters;                  // the reactor's, loop thread writes
//   ReactorCounters::Bump(counters.bytes_in, n);
//   ReactorStats s = counters.Snapshot();      // any thread
//
// Thread safety: ReactorCounters is written by its reactor's thread (the
// few exceptions say so) and read anywhere; ReactorStats is a plain value.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/loop/close_reason.h"
#include "core/loop/mailbox.h"

namespace troupe {

// X(name, combine, source, metric, type, help)
//   combine  Sum, Max, or None (kept per reactor only): how
//            ServerStats::Total() folds reactors together
//   source   Own: an atomic the reactor bumps; Derived: filled in by
//            Reactor::Stats() from elsewhere (the inbox, the listener, a sum)
//   metric   the Prometheus family with a reactor label, or nullptr: not
//            exported on its own
// Rows are rendered in this order, before the labelled families below.
//
// Accepted and outbound connections are counted apart, so that `open`
// (accepted - closed) stays the number of accepted connections open, which
// the max_connections gate and the acceptor's balancing are built on: an
// actor's own dial-outs must not use up the server's connection limit.
//   accepted - closed              = open           (inbound)
//   connects - outbound_closed     = outbound_open  (connecting or open)
//   connected <= connects; every attempt, one that failed inside Connect()
//   included, is closed once, with a reason.
// closed_by_reason counts both kinds, so on /metrics
//   accepted + connects = open + outbound_open + sum(closed_by_reason).
#define TROUPE_REACTOR_COUNTERS(X)                                                          \
  X(accepted, Sum, Own, "troupe_connections_accepted_total", "counter",                     \
    "Connections handed to the reactor.")                                                   \
  X(open, Sum, Derived, "troupe_connections_open", "gauge", "Inbound connections open.")    \
  X(closed, Sum, Own, nullptr, "", "") /* accepted connections only */                      \
  X(connects, Sum, Own, "troupe_outbound_connects_total", "counter",                        \
    "Outbound connections attempted (Reactor::Connect).")                                   \
  X(connected, Sum, Own, "troupe_outbound_connected_total", "counter",                      \
    "Outbound connections that opened.")                                                    \
  X(outbound_open, Sum, Derived, "troupe_outbound_open", "gauge",                           \
    "Outbound connections connecting or open now.")                                         \
  X(outbound_closed, Sum, Own, nullptr, "", "") /* every attempt ends here once */          \
  X(bytes_in, Sum, Own, "troupe_bytes_received_total", "counter", "Bytes read from peers.") \
  X(bytes_out, Sum, Own, "troupe_bytes_sent_total", "counter", "Bytes written to peers.")   \
  X(writes, Sum, Own, "troupe_writes_total", "counter",                                     \
    "send()/sendmsg() calls to peers (output is coalesced: one per callback).")             \
  X(mail_delivered, Sum, Own, "troupe_mail_delivered_total", "counter",                     \
    "Mail handed to a live actor.")                                                         \
  X(mail_dropped, Sum, Derived, nullptr, "", "") /* every reason, summed */                 \
  X(mailbox_depth, Sum, Own, "troupe_mailbox_depth", "gauge",                               \
    "Mail waiting in the reactor's actor mailboxes.")                                       \
  X(mailbox_depth_max, Max, Own, "troupe_mailbox_depth_max", "gauge",                       \
    "The most mail ever waiting in one mailbox of the reactor.")                            \
  X(inbox_mail_depth, Sum, Derived, "troupe_inbox_mail_depth", "gauge",                     \
    "User mail waiting in the reactor's inbox.")                                            \
  X(inbox_mail_depth_max, Max, Derived, "troupe_inbox_mail_depth_max", "gauge",             \
    "The most user mail ever waiting in the reactor's inbox.")                              \
  X(frames_shed, Sum, Own, "troupe_frames_shed_total", "counter",                           \
    "Output an actor dropped because its peer was behind (TryWriteFrame).")                 \
  /* Two writers (the acceptor's failed enqueue, the reactor): fetch_add. */                \
  X(handoffs_dropped, Sum, Own, "troupe_handoffs_dropped_total", "counter",                 \
    "Accepted sockets closed before they became connections (epoll_ctl or "                 \
    "queue failure, stopping).")                                                            \
  X(queue_depth, Sum, Derived, "troupe_queue_depth", "gauge",                               \
    "Handoffs and inbox items waiting for the reactor (approximate).")                      \
  X(wake_writes, Sum, Derived, "troupe_wakeups_total", "counter",                           \
    "Eventfd writes needed to wake the reactor from epoll_wait.")                           \
  X(deadline_entries, Sum, Own, nullptr, "", "") /* idle/flush/linger/connect */            \
  X(timers, Sum, Own, nullptr, "", "")           /* RunAfter timers pending */              \
  X(tasks_run, Sum, Own, nullptr, "", "")                                                   \
  X(loop_turns, Sum, Own, nullptr, "", "")                                                  \
  /* Per reactor only: the server's totals are ServerStats::refused/rejected. */            \
  X(refused, None, Derived, nullptr, "", "")  /* reuse-port: shed, descriptors ran out */   \
  X(rejected, None, Derived, nullptr, "", "") /* reuse-port: closed, max_connections */     \
  X(turn_sum_ns, Sum, Own, nullptr, "", "")   /* see turn_buckets */                        \
  X(stalls, Sum, Own, "troupe_reactor_stalls_total", "counter",                             \
    "Loop turns longer than the stall threshold (logged too).")                             \
  X(services, Sum, Derived, "troupe_services", "gauge", "Service actors running now.")      \
  X(services_started, Sum, Own, "troupe_services_started_total", "counter",                 \
    "Service actors spawned on the reactor.")                                               \
  X(services_stopped, Sum, Own, nullptr, "", "")                                            \
  X(service_restarts, Sum, Own, "troupe_service_restarts_total", "counter",                 \
    "Service actors restarted by their policy after a failure.")                            \
  X(mail_bounced, Sum, Own, "troupe_mail_bounced_total", "counter",                         \
    "Requests dropped on their way and returned to their asker.")                           \
  X(asks_timed_out, Sum, Own, "troupe_asks_timed_out_total", "counter",                     \
    "Asks answered by their timeout.")                                                      \
  X(ask_replies_late, Sum, Own, "troupe_ask_replies_late_total", "counter",                 \
    "Replies that came after their Ask had timed out, dropped.")

// A point-in-time copy of a reactor's counters.
struct ReactorStats {
#define TROUPE_STATS_FIELD(name, ...) uint64_t name = 0;
  TROUPE_REACTOR_COUNTERS(TROUPE_STATS_FIELD)
#undef TROUPE_STATS_FIELD
  // The labelled families (rendered by reason) and the turn histogram.
  std::array<uint64_t, static_cast<size_t>(MailDrop::kCount)> mail_dropped_by_reason{};
  std::array<uint64_t, static_cast<size_t>(CloseReason::kCount)> closed_by_reason{};
  // Loop-turn latency: time from epoll_wait's return to the end of the turn.
  static constexpr std::array<int64_t, 9> kTurnBucketsUs = {10,   50,    100,   500,   1000,
                                                            5000, 10000, 50000, 100000};
  // turn_buckets[i]: turns that took <= kTurnBucketsUs[i] (cumulative, as
  // Prometheus wants); the last entry counts every turn (+Inf).
  std::array<uint64_t, kTurnBucketsUs.size() + 1> turn_buckets{};

  // Folds `other` in, counter by counter (Sum or Max, as the table says).
  void Add(const ReactorStats& other);
};

// One row of the table, for code that walks every counter (/metrics).
struct ReactorCounterInfo {
  const char* name;
  uint64_t ReactorStats::*field;
  const char* metric;  // nullptr: not exported on its own
  const char* type;
  const char* help;
};
#define TROUPE_COUNTER_INFO(name, combine, source, metric, type, help) \
  ReactorCounterInfo{#name, &ReactorStats::name, metric, type, help},
inline constexpr ReactorCounterInfo kReactorCounterInfo[] = {
    TROUPE_REACTOR_COUNTERS(TROUPE_COUNTER_INFO)};
#undef TROUPE_COUNTER_INFO

// The live counters of one reactor: relaxed atomics with one writer.
struct ReactorCounters {
#define TROUPE_ATOMIC_Own(name) std::atomic<uint64_t> name{0};
#define TROUPE_ATOMIC_Derived(name)
#define TROUPE_COUNTER_ATOMIC(name, combine, source, ...) TROUPE_ATOMIC_##source(name)
  TROUPE_REACTOR_COUNTERS(TROUPE_COUNTER_ATOMIC)
#undef TROUPE_COUNTER_ATOMIC
#undef TROUPE_ATOMIC_Derived
#undef TROUPE_ATOMIC_Own
  std::array<std::atomic<uint64_t>, static_cast<size_t>(MailDrop::kCount)> mail_dropped_by_reason{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(CloseReason::kCount)> closed_by_reason{};
  std::array<std::atomic<uint64_t>, ReactorStats::kTurnBucketsUs.size() + 1> turn_buckets{};

  // One writer (the loop thread), so a relaxed load+store is enough and
  // costs no locked instruction; readers may be anywhere.
  static void Bump(std::atomic<uint64_t>& counter, uint64_t n = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void CountMailDrop(MailDrop reason, uint64_t n = 1) {
    Bump(mail_dropped_by_reason[static_cast<size_t>(reason)], n);
  }
  // `outbound`: the connection came from Reactor::Connect (see the table).
  void CountClose(CloseReason reason, bool outbound) {
    Bump(outbound ? outbound_closed : closed);
    Bump(closed_by_reason[static_cast<size_t>(reason)]);
  }
  // Records one loop turn of `ns` nanoseconds in the histogram.
  void RecordTurn(int64_t ns);

  // Any thread. Every Own counter; Derived ones are left at zero.
  ReactorStats Snapshot() const;
};

}  // namespace troupe
