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
// reactor thread: Stop joins them); Stats() and SendMail() from any thread.
#pragma once

#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/acceptor.h"
#include "core/address.h"
#include "core/reactor.h"
#include "core/socket.h"

namespace troupe {

struct ServerOptions {
  Address address = Address::FromHostPort("127.0.0.1", 7007).value();
  int workers = 0;  // 0: one per online CPU
  ConnectionOptions connection;
  ListenOptions listen;
  size_t read_budget_bytes = ReactorOptions{}.read_budget_bytes;
  // Stop(): how long connections get to flush before they are cut.
  absl::Duration drain_timeout = absl::Seconds(10);
};

struct ServerStats {
  std::vector<ReactorStats> reactors;
  uint64_t refused = 0;  // shed by the acceptor on descriptor exhaustion
  ReactorStats Total() const;
};

class Server {
 public:
  // Binds and listens (errors name the address), creates the reactors.
  static absl::StatusOr<std::unique_ptr<Server>> Create(
      const ServerOptions& options, HandlerFactory factory);
  ~Server();  // Stop()s if still running

  void Start();
  // Stops accepting, drains every reactor (bounded by drain_timeout), joins.
  void Stop();
  // Like Stop() but closes every connection at once.
  void StopNow();

  // The bound address (with the real port when asked for port 0).
  const Address& address() const { return address_; }
  int workers() const { return static_cast<int>(reactors_.size()); }
  Reactor& reactor(int i) { return *reactors_[i]; }
  // Any thread.
  void SendMail(ConnectionId to, Mail mail) {
    reactors_[to.reactor]->SendMail(to, std::move(mail));
  }
  // Any thread.
  ServerStats Stats() const;

 private:
  Server(const ServerOptions& options, Address address);
  void Join();

  const ServerOptions options_;
  const Address address_;
  std::vector<std::unique_ptr<Reactor>> reactors_;
  std::unique_ptr<Acceptor> acceptor_;
  std::vector<std::thread> threads_;
};

// Online CPUs, at least 1.
int OnlineCpus();

}  // namespace troupe
