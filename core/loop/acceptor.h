// Acceptor: the thread that accepts connections and deals them out to the
// reactors over each reactor's lock-free handoff queue; and Admission, the
// accept step itself, which reactors also use in reuse-port mode.
//
//   listen fd ──Admission::AcceptOne──► reactor[pick].Adopt(token, handoff)
//     accept4(NONBLOCK|CLOEXEC)          (queue + coalesced eventfd wake)
//     max-connections gate
//     TCP_NODELAY
//
// Descriptor exhaustion (EMFILE/ENFILE) must neither spin nor kill the server:
// Admission keeps one spare descriptor, and when the table is full it frees
// the spare, accepts the waiting connection and closes it at once (the peer
// sees a clean close instead of hanging in the backlog), re-takes the spare,
// and tells its caller to pause accepting for a moment (the trick described
// in libev's documentation and used by muduo). Each refusal is counted; a log
// line goes out at most once per second.
//
//   auto acceptor = Acceptor::Create(std::move(listen_fd), reactors, {}).value();
//   acceptor->Start();   // spawns the thread
//   acceptor->Stop();    // any thread; joins; closes the listening socket
//
// Thread safety: Admission is thread-compatible (its counters any thread);
// Acceptor's Start/Stop from one controlling thread, counters any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/fd.h"
#include "core/loop/reactor.h"

namespace troupe {

// How long to stop accepting after descriptors ran out. Long enough not to
// burn CPU on a full table, short enough that service resumes promptly.
inline constexpr int kExhaustedPauseMs = 100;

struct AdmissionCounters {
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> refused{0};   // shed: descriptors ran out
  std::atomic<uint64_t> rejected{0};  // closed at once: max_connections open
};

class Admission {
 public:
  // Connections open across the whole server, for the max-connections gate.
  using OpenCount = std::function<uint64_t()>;
  // kRejected: one connection was accepted and closed at once because
  // max_connections were open; it counts toward the caller's batch like an
  // admitted one, so a connect flood at the limit cannot keep the caller
  // (the acceptor thread, a reuse-port reactor) from its other work.
  enum class Result { kAdmitted, kRejected, kEmpty, kExhausted, kFailed };

  // `max_connections` 0: no limit (and `open_count` is never called).
  Admission(int listen_fd, size_t max_connections, OpenCount open_count);

  // Accepts one connection into `out`. kEmpty: nothing waiting. kExhausted /
  // kFailed: pause for kExhaustedPauseMs rather than retry at once.
  // kRejected: accepted and closed (the connection limit); call again.
  Result AcceptOne(Handoff& out);
  const AdmissionCounters& counters() const { return counters_; }

 private:
  void Shed(int error);

  const int listen_fd_;
  Fd spare_fd_;  // released on EMFILE to accept-and-close one connection
  const size_t max_connections_;
  const OpenCount open_count_;
  AdmissionCounters counters_;
};

// How the acceptor thread picks a reactor for each connection.
enum class Balance { kRoundRobin, kLeastLoaded };

class Acceptor {
 public:
  struct Options {
    size_t max_connections = 0;
    Balance balance = Balance::kRoundRobin;
    Admission::OpenCount open_count;  // required when max_connections > 0
  };
  static absl::StatusOr<std::unique_ptr<Acceptor>> Create(Fd listen_fd,
                                                          std::vector<Reactor*> reactors,
                                                          Options options);
  ~Acceptor();

  void Start();
  void Stop();

  const AdmissionCounters& counters() const { return admission_.counters(); }

 private:
  Acceptor(Fd listen_fd, Fd stop_fd, std::vector<Reactor*> reactors, Options options);
  void Loop();
  // Accepts until EAGAIN; returns false if accepting should pause.
  bool AcceptBatch();
  size_t PickReactor();

  Fd listen_fd_;
  Fd stop_fd_;  // eventfd: Stop() makes it readable
  std::vector<Reactor*> reactors_;
  const Balance balance_;
  Admission admission_;
  std::vector<moodycamel::ProducerToken> tokens_;  // one per reactor
  std::vector<uint64_t> handed_;                   // per reactor, for least-loaded
  size_t next_ = 0;
  std::thread thread_;
};

}  // namespace troupe
