// Acceptor: the thread that accepts connections and deals them out to the
// reactors, round robin, over each reactor's lock-free handoff queue.
//
//   listen fd ──accept4(NONBLOCK|CLOEXEC)──► TCP_NODELAY ──► reactor[i].Adopt()
//                                                          (queue + coalesced wake)
//
// Descriptor exhaustion (EMFILE/ENFILE) must neither spin nor kill the server:
// the acceptor keeps one spare descriptor, and when the table is full it frees
// the spare, accepts the waiting connection and closes it at once (the peer
// sees a clean close instead of hanging in the backlog), re-takes the spare,
// and pauses accepting for a moment (the trick from libev's and muduo's
// documentation). Each refusal is counted; a log line goes out at most once
// per second.
//
//   auto acceptor = Acceptor::Create(std::move(listen_fd), reactors).value();
//   acceptor->Start();   // spawns the thread
//   acceptor->Stop();    // any thread; joins; closes the listening socket
//
// Thread safety: Start/Stop from one controlling thread; the counters any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "core/fd.h"
#include "core/reactor.h"

namespace troupe {

class Acceptor {
 public:
  // `max_connections` > 0: connections beyond that many open are accepted
  // and closed at once (the peer sees a clean close rather than a hang in
  // the backlog), and counted in rejected().
  static absl::StatusOr<std::unique_ptr<Acceptor>> Create(
      Fd listen_fd, std::vector<Reactor*> reactors, size_t max_connections = 0);
  ~Acceptor();

  void Start();
  void Stop();

  uint64_t accepted() const { return accepted_.load(std::memory_order_relaxed); }
  // Connections accepted and closed at once because descriptors ran out.
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }
  // Connections closed at once because max_connections were open.
  uint64_t rejected() const { return rejected_.load(std::memory_order_relaxed); }

 private:
  Acceptor(Fd listen_fd, Fd stop_fd, std::vector<Reactor*> reactors,
           size_t max_connections);
  // Handed to reactors minus closed by them: O(reactors), read per accept
  // only when a limit is set.
  uint64_t OpenConnections() const;
  void Loop();
  // Accepts until EAGAIN; returns false if descriptors ran out.
  bool AcceptBatch();
  void ShedOne();

  Fd listen_fd_;
  Fd stop_fd_;   // eventfd: Stop() makes it readable
  Fd spare_fd_;  // released on EMFILE to accept-and-close one connection
  std::vector<Reactor*> reactors_;
  const size_t max_connections_;
  std::vector<moodycamel::ProducerToken> tokens_;  // one per reactor
  size_t next_ = 0;
  std::thread thread_;
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> rejected_{0};
};

}  // namespace troupe
