// Handoff: a zero-downtime restart. The running server offers its listening
// socket on a Unix stream socket; a new process connects, receives the SAME
// socket (SCM_RIGHTS: one open file description shared by both), serves on
// it, and says so; only then does the old process begin its drain.
//
//   old (--handoff-socket PATH)            new (--takeover PATH)
//   HandoffServer::Create(PATH, fd, ...)
//                        ◄── connect ──    Takeover::Receive(PATH)
//   "TROUPE-HANDOFF 1 <address> <pid>\n" + the fd (SCM_RIGHTS) ──►
//                                          Server on adopt_listen_fd, Start()
//                        ◄── "READY <pid>\n"   Takeover::Confirm()
//   "DRAINING\n" ──►
//   on_taken_over(pid): the drain, as on SIGTERM (RequestStop, signals.h)
//                                          HandoffServer::Create(PATH, ...)
//                                          (unlinks and rebinds PATH)
//
// Why the socket itself moves (and not SO_REUSEPORT overlap): a second
// reuse-port listener has an accept queue of its own, and connections the
// kernel already queued on the old listener are reset when the old process
// closes it. Moving the descriptor keeps one socket and one queue: whatever
// was queued is accepted by whichever process accepts next, and the old
// process only stops calling accept() and closes its descriptor (never
// shutdown(), which would end the shared socket for both).
//
//   auto offer = HandoffServer::Create("/run/echo/handoff", listen_fd,
//                                      "127.0.0.1:7007", [](pid_t) { RequestStop(); });
//   (*offer)->Start();   // a thread; Stop() joins it and unlinks PATH
//
//   auto takeover = Takeover::Receive("/run/echo/handoff", absl::Seconds(10));
//   options.adopt_listen_fd = takeover->ReleaseListenFd();
//   ... server->Start();
//   absl::Status s = takeover->Confirm(absl::Seconds(10));   // the old one drains now
//
// A new process that fails before Confirm() leaves the old one serving: it
// sees the handoff connection close without READY, logs it, and goes on
// offering. Only a process of the same user (or root) is served (SO_PEERCRED),
// and PATH is made mode 0600.
//
// Thread safety: HandoffServer's Create/Start/Stop from one controlling
// thread; on_taken_over runs on its thread. Takeover: thread-compatible.
#pragma once

#include <sys/socket.h>  // ucred
#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/base/fd.h"

namespace troupe {

// OK when `peer` (SO_PEERCRED) is uid `self` or root; otherwise an error
// that starts with `what`. Both ends of a handoff check the other with it.
absl::Status CheckHandoffPeer(const ucred& peer, uid_t self, const std::string& what);

class HandoffServer {
 public:
  // Listens on a Unix stream socket at `path` and offers a copy of `listen_fd` (duplicated here;
  // the caller keeps its own). `address` describes it to the taker. Something at `path` already: a
  // socket nobody answers on (stale) is unlinked; one that answers ("in use by a running server")
  // or anything that is not a socket is refused and left alone. `on_taken_over` runs once, on the
  // handoff thread, with the new process's pid, after it said READY; no further takeover is offered
  // then. Errors name `path`.
  static absl::StatusOr<std::unique_ptr<HandoffServer>> Create(
      std::string path, int listen_fd, std::string address,
      std::function<void(pid_t)> on_taken_over);
  ~HandoffServer();

  void Start();
  // Joins the thread, closes our copy of the listening socket, and unlinks
  // `path` unless a successor took over (the path is its socket by now).
  void Stop();
  const std::string& path() const { return path_; }

 private:
  HandoffServer(std::string path, Fd unix_listener, Fd listen_fd, Fd wake, std::string address,
                std::function<void(pid_t)> on_taken_over, dev_t dev, ino_t ino);
  void Run();
  // One connection: true once it took the socket over.
  bool Serve(int conn);

  const std::string path_;
  Fd unix_listener_;
  Fd listen_fd_;  // our copy, offered to each taker
  Fd wake_;       // eventfd: Stop() ends Run()
  const std::string address_;
  const std::function<void(pid_t)> on_taken_over_;
  // The socket file we bound, so that Stop() never unlinks a successor's.
  const dev_t dev_;
  const ino_t ino_;
  std::atomic<bool> taken_over_{false};
  std::thread thread_;
};

class Takeover {
 public:
  // Connects to a HandoffServer at `path` and receives its listening socket
  // and description. Errors name `path`: nothing there, refused, a listener
  // of another user (SO_PEERCRED; root is believed), no socket in the reply,
  // a reply that is not the handoff greeting, `timeout` passed (the connect
  // included).
  static absl::StatusOr<Takeover> Receive(const std::string& path, absl::Duration timeout);

  // The received listening socket (for ServerOptions::adopt_listen_fd).
  int ReleaseListenFd() { return listen_fd_.Release(); }
  const std::string& address() const { return address_; }
  pid_t from_pid() const { return from_pid_; }

  // Tells the old process that we serve (it begins its drain) and waits up
  // to `timeout` for its DRAINING. An error here means the old one may not
  // drain, but we serve either way.
  absl::Status Confirm(absl::Duration timeout);

 private:
  Takeover(std::string path, Fd channel, Fd listen_fd, std::string address, pid_t from_pid);

  std::string path_;
  Fd channel_;
  Fd listen_fd_;
  std::string address_;
  pid_t from_pid_ = 0;
};

}  // namespace troupe
