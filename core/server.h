// Server: a listening socket, one acceptor thread and N reactor threads.
//
//   ServerOptions options;
//   options.address = Address::Parse("127.0.0.1:0").value();
//   options.workers = 4;
//   auto server = Server::Create(options, [](Connection&) {
//     return std::make_unique<MyHandler>();
//   });
//   if (!server.ok()) { /* e.g. "bind 127.0.0.1:7007: Address already in use" */ }
//   (*server)->Start();
//   std::cout << (*server)->address().ToString();   // the real port
//   (*server)->Stop();   // drain: flush, close, bounded by drain_timeout
//
// Thread safety: Create/Start/Stop from one controlling thread (never from a
// reactor thread: Stop joins them); Stats(), SendMail() and the runtime
// controls (PauseAccepting, SetMaxConnections, ...) from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "core/loop/acceptor.h"
#include "core/loop/reactor.h"
#include "core/net/address.h"
#include "core/net/socket.h"

namespace troupe {

// Who accepts connections.
//   kAcceptorThread: one acceptor thread hands each socket to a reactor over
//     its lock-free queue; it can balance (round robin, least loaded) and one
//     listener means one accept queue to drain on shutdown.
//   kReusePort: every reactor has its own SO_REUSEPORT listener and accepts
//     itself: no handoff hop and no acceptor thread, but the kernel spreads
//     connections by a hash of the 4-tuple, blind to how busy each reactor
//     is, and connections still queued on a listener when it closes are reset.
enum class AcceptMode { kAcceptorThread, kReusePort };

struct ServerOptions {
  Address address = Address::FromHostPort("127.0.0.1", 7007).value();
  int workers = 0;  // 0: one per online CPU
  AcceptMode accept_mode = AcceptMode::kAcceptorThread;
  Balance balance = Balance::kRoundRobin;  // kAcceptorThread only
  ConnectionOptions connection;
  ListenOptions listen;
  size_t read_budget_bytes = ReactorOptions{}.read_budget_bytes;
  absl::Duration idle_timeout = absl::ZeroDuration();  // zero or infinite: off
  // User mail waiting in one reactor's inbox beyond this is refused.
  size_t inbox_mail_capacity = Inbox::kDefaultMailCapacity;
  // Open connections beyond this are accepted and closed at once (counted
  // as rejected). Zero: no limit.
  size_t max_connections = 0;
  // Pin reactor i to CPU (first_cpu + i) modulo the online CPUs. Helps when
  // the machine runs little else; hurts when it shares cores with a busy
  // neighbour (a pinned reactor cannot move away from it).
  bool pin_cpus = false;
  int first_cpu = 0;
  // Stop(): how long connections get to flush (and to receive the replies
  // their actors still owe) before they are cut. Infinite: no limit.
  absl::Duration drain_timeout = absl::Seconds(10);
  // Stop(): how long to keep accepting after the health check turned to
  // "draining" (serving() false), so that a load balancer sees the failed
  // check and sends no more clients before connections are refused. Zero
  // (the default, for a server with no balancer in front): stop at once.
  absl::Duration drain_grace = absl::ZeroDuration();
  // A reactor turn longer than this is counted and logged as a stall
  // (ReactorOptions::stall_threshold). Zero or infinite: never.
  absl::Duration stall_threshold = ReactorOptions{}.stall_threshold;
  // Behind a proxy that sends the PROXY protocol (HAProxy `send-proxy` or
  // `send-proxy-v2`): every accepted connection must begin with its header
  // (v1 or v2), and handlers see the client it names as Connection::peer()
  // from their creation on (core/loop/proxy_header.h). A malformed header
  // closes that connection (kProxyHeaderInvalid), and so does a header not
  // complete within proxy_header_timeout (kProxyHeaderTimeout; must be > 0,
  // infinite: no limit). Never turn it on for a port clients reach directly:
  // any client could then claim any address.
  bool proxy_protocol = false;
  absl::Duration proxy_header_timeout = absl::Seconds(5);
  // TLS (or another transport) on every accepted connection: e.g.
  // NewTlsServerFactory (core/net/tls.h, library troupe_tls). Handlers still
  // see and send plaintext; they get OnOpen once the handshake is done, and
  // one not done within connection.handshake_timeout (10 s) closes that
  // connection (tls_handshake_timeout), as does a failed one
  // (tls_handshake_failed). Null: plaintext. Not with proxy_protocol (the
  // header would have to be read before the handshake): InvalidArgument.
  std::shared_ptr<TransportFactory> transport;
  // A socket that already listens (one systemd passed, core/ops/systemd.h,
  // or one taken over from a running server, core/ops/handoff.h) to accept
  // from instead of binding `address`; address() is then its local address.
  // Create owns it from the call on (it closes it on any error) and checks
  // that it listens (AdoptListeningSocket, core/net/socket.h). Stop() only
  // closes our descriptor: never shutdown(), so another process holding the
  // same socket keeps it and its accept queue. kAcceptorThread only (the
  // reuse-port mode needs a listener per reactor): else InvalidArgument.
  // -1: bind `address`.
  int adopt_listen_fd = -1;
};

struct ServerStats {
  std::vector<ReactorStats> reactors;
  uint64_t refused = 0;   // shed by the acceptor on descriptor exhaustion
  uint64_t rejected = 0;  // closed at once: max_connections were open
  ReactorStats Total() const;
};

class Server {
 public:
  // Binds and listens (errors name the address), or adopts
  // options.adopt_listen_fd; creates the reactors.
  static absl::StatusOr<std::unique_ptr<Server>> Create(const ServerOptions& options,
                                                        HandlerFactory factory);
  ~Server();  // Stop()s if still running

  void Start();
  // The drain, in the order load balancers need (docs/deploy.md):
  //   1. serving() turns false at once: /healthz answers 503 and the agent
  //      check "drain" (core/ops/metrics_server.h);
  //   2. accepting goes on for drain_grace;
  //   3. accepting stops;
  //   4. every reactor drains, bounded by drain_timeout: each connection
  //      gets the replies owed to it and is flushed and closed; a reactor
  //      with nothing left keeps serving the others until all are done.
  // Joins.
  void Stop();
  // Like Stop() but closes every connection at once.
  void StopNow();
  // Any thread (e.g. a second SIGTERM while Stop() drains): ends the drain
  // now (the grace too); every connection is closed and Stop() returns
  // promptly.
  void Abort();
  // Any thread. True from Start() until Stop()/StopNow() begins: what a
  // health check reports.
  bool serving() const { return serving_.load(std::memory_order_relaxed); }
  // Any thread. True from Start() until accepting stops (after the grace).
  bool accepting() const { return accepting_.load(std::memory_order_relaxed); }

  // Runtime controls (the admin endpoint, core/ops/admin.h). Any thread.
  // PauseAccepting: every listener of ours (the acceptor thread's, or each
  // reactor's in reuse-port mode) leaves its epoll set; open connections are
  // served as before, new ones wait in the kernel's listen backlog (up to
  // ListenOptions' backlog; beyond it the kernel drops SYNs and clients
  // retry) until ResumeAccepting(). Independent of Stop(): a paused server
  // still drains. Each takes effect on the loops that own a listener, within
  // a loop turn; `done`, if given, runs once all of them have applied it (on
  // one of those threads; never if the server has already stopped). Calls
  // from one thread apply in order.
  void PauseAccepting(absl::AnyInvocable<void() &&> done = nullptr);
  void ResumeAccepting(absl::AnyInvocable<void() &&> done = nullptr);
  // True from PauseAccepting() until ResumeAccepting().
  bool accept_paused() const { return accept_paused_.load(std::memory_order_relaxed); }
  // The max-connections gate (ServerOptions::max_connections), changed from
  // the next accept on; connections already open beyond a lowered limit stay
  // open. 0: no limit.
  void SetMaxConnections(size_t max_connections);
  size_t max_connections() const;

  // The bound address (with the real port when asked for port 0).
  const Address& address() const { return address_; }
  int workers() const { return static_cast<int>(reactors_.size()); }
  Reactor& reactor(int i) { return *reactors_[static_cast<size_t>(i)]; }
  // Any thread. False, counted, when `to` names no actor of this server
  // (counted on reactor 0 as invalid_ref) or its reactor's inbox is full
  // (see Reactor::SendMail).
  bool SendMail(ConnectionId to, Mail mail);
  // Any thread.
  ServerStats Stats() const;

 private:
  Server(const ServerOptions& options, Address address);
  void Join();
  // Handed to reactors minus closed: the max-connections gate's view.
  uint64_t OpenConnections() const;
  void SetAcceptPaused(bool paused, absl::AnyInvocable<void() &&> done);

  const ServerOptions options_;
  const Address address_;
  std::vector<std::unique_ptr<Reactor>> reactors_;
  std::unique_ptr<Acceptor> acceptor_;  // kAcceptorThread only
  // kReusePort: each reactor's listener, owned by its reactor (for the gate).
  std::vector<Listener*> listeners_;
  std::atomic<bool> accept_paused_{false};
  std::vector<std::thread> threads_;
  std::atomic<bool> serving_{false};
  std::atomic<bool> accepting_{false};
  std::atomic<bool> abort_requested_{false};
  absl::Notification aborted_;  // cuts the grace short
  // Reactors still draining (Reactor::set_drain_group).
  std::atomic<int> draining_reactors_{0};
};

// Online CPUs, at least 1.
int OnlineCpus();

}  // namespace troupe
