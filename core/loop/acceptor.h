// Acceptor: the thread that accepts connections and deals them out to the
// reactors, each over its reactor's inbox (a lock-free handoff queue). Its
// thread runs a Reactor of its own (the one event loop of core, with no
// connections: its listener dispatches instead of adopting), so accept
// pauses, stopping and wake-ups work as everywhere else.
//
//   listen fd ──Listener::AcceptOne──► reactor[pick].Adopt(token, handoff)
//     accept4(NONBLOCK|CLOEXEC)          (queue + coalesced eventfd wake)
//     max-connections gate               (core/loop/inbox.h)
//     TCP_NODELAY                        (core/loop/listener.h)
//
//   auto acceptor = Acceptor::Create(std::move(listen_fd), reactors, {}).value();
//   acceptor->Start();   // spawns the thread
//   acceptor->Stop();    // any thread; joins; closes the listening socket
//
// Thread safety: Start/Stop from one controlling thread; counters,
// SetMaxConnections and SetAcceptPaused any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/fd.h"
#include "core/loop/listener.h"
#include "core/loop/reactor.h"

namespace troupe {

// How the acceptor thread picks a reactor for each connection.
enum class Balance { kRoundRobin, kLeastLoaded };

class Acceptor {
 public:
  struct Options {
    size_t max_connections = 0;
    Balance balance = Balance::kRoundRobin;
    Listener::OpenCount open_count;  // required when max_connections > 0
  };
  static absl::StatusOr<std::unique_ptr<Acceptor>> Create(Fd listen_fd,
                                                          std::vector<Reactor*> reactors,
                                                          Options options);
  ~Acceptor();

  void Start();
  void Stop();

  const ListenerCounters& counters() const { return listener_->counters(); }
  // Any thread. The gate (Listener::set_max_connections) and the operator's
  // pause (Reactor::SetAcceptPaused, `done` on the acceptor's thread).
  void SetMaxConnections(size_t max_connections) {
    listener_->set_max_connections(max_connections);
  }
  size_t max_connections() const { return listener_->max_connections(); }
  void SetAcceptPaused(bool paused, Reactor::Task done = nullptr) {
    loop_->SetAcceptPaused(paused, std::move(done));
  }

 private:
  Acceptor(std::unique_ptr<Reactor> loop, std::vector<Reactor*> reactors, Balance balance);
  // On the acceptor's loop: hands one accepted socket to a reactor.
  void Dispatch(Handoff handoff);
  size_t PickReactor();

  std::unique_ptr<Reactor> loop_;  // the acceptor's own loop; owns the listener
  Listener* listener_ = nullptr;   // loop_'s, for its counters and its gate
  std::vector<Reactor*> reactors_;
  const Balance balance_;
  std::vector<HandoffToken> tokens_;  // one per reactor
  std::vector<uint64_t> handed_;      // per reactor, for least-loaded
  size_t next_ = 0;
  std::thread thread_;
};

}  // namespace troupe
