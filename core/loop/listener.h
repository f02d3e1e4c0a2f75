// Listener: the accept step. Accepts one connection at a time from a
// listening socket, through the max-connections gate, with TCP_NODELAY;
// used by every loop that listens: the acceptor thread, each reactor in
// reuse-port mode, the metrics endpoint.
//
//   Listener listener(listen_fd.get(), /*max_connections=*/0, nullptr);
//   Handoff handoff;
//   switch (listener.AcceptOne(handoff)) { case Listener::Result::kAdmitted: ... }
//
// Descriptor exhaustion (EMFILE/ENFILE) must neither spin nor kill the server:
// the listener keeps one spare descriptor, and when the table is full it
// frees the spare, accepts the waiting connection and closes it at once (the
// peer sees a clean close instead of hanging in the backlog), re-takes the
// spare, and tells its caller to pause accepting for a moment (the trick
// described in libev's documentation and used by muduo). Each refusal is
// counted; a log line goes out at most once per second.
//
// Thread safety: thread-compatible (one accepting thread); counters and
// set_max_connections/max_connections any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "core/base/fd.h"
#include "core/loop/inbox.h"

namespace troupe {

// How long to stop accepting after descriptors ran out. Long enough not to
// burn CPU on a full table, short enough that service resumes promptly.
inline constexpr int kExhaustedPauseMs = 100;

struct ListenerCounters {
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> refused{0};   // shed: descriptors ran out
  std::atomic<uint64_t> rejected{0};  // closed at once: max_connections open
};

class Listener {
 public:
  // Connections open across the whole server, for the max-connections gate.
  using OpenCount = std::function<uint64_t()>;
  // kRejected: one connection was accepted and closed at once because
  // max_connections were open; it counts toward the caller's batch like an
  // admitted one, so a connect flood at the limit cannot keep the caller
  // (the acceptor thread, a reuse-port reactor) from its other work.
  enum class Result { kAdmitted, kRejected, kEmpty, kExhausted, kFailed };

  // `max_connections` 0: no limit (and `open_count` is never called).
  Listener(int listen_fd, size_t max_connections, OpenCount open_count);

  // Any thread. Changes the gate from the next accept on (the admin
  // endpoint, core/ops/admin.h); open connections beyond it stay open. A
  // limit needs the `open_count` given at construction.
  void set_max_connections(size_t max_connections);
  size_t max_connections() const { return max_connections_.load(std::memory_order_relaxed); }

  // Accepts one connection into `out`. kEmpty: nothing waiting. kExhausted /
  // kFailed: pause for kExhaustedPauseMs rather than retry at once.
  // kRejected: accepted and closed (the connection limit); call again.
  Result AcceptOne(Handoff& out);
  const ListenerCounters& counters() const { return counters_; }

 private:
  void Shed(int error);

  const int listen_fd_;
  Fd spare_fd_;  // released on EMFILE to accept-and-close one connection
  // Read once per accept, relaxed: a change only needs to be seen soon,
  // not ordered with anything else.
  std::atomic<size_t> max_connections_;
  const OpenCount open_count_;
  ListenerCounters counters_;
};

}  // namespace troupe
