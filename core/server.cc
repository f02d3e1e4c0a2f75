#include "core/server.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "core/base/check.h"
#include "core/base/log.h"
#include "core/loop/proxy_header.h"

namespace troupe {

int OnlineCpus() {
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

ReactorStats ServerStats::Total() const {
  ReactorStats total;
  for (const ReactorStats& r : reactors) total.Add(r);
  return total;
}

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const ServerOptions& options,
                                                       HandlerFactory factory) {
  // Owned from here on, so that every error return below closes it.
  Fd adopted(options.adopt_listen_fd);
  if (adopted.valid() && options.accept_mode == AcceptMode::kReusePort) {
    return absl::InvalidArgumentError(
        "adopt_listen_fd needs the acceptor-thread mode: reuse-port mode binds a listener per "
        "reactor");
  }
  if (options.workers < 0) {
    return absl::InvalidArgumentError("workers must be >= 0");
  }
  if (options.connection.max_output_bytes <= options.connection.high_watermark) {
    return absl::InvalidArgumentError(
        "max_output_bytes must exceed high_watermark (reading pauses at the watermark; "
        "the cap is for output that does not come from reading)");
  }
  if (options.transport != nullptr && options.proxy_protocol) {
    return absl::InvalidArgumentError(
        "transport (TLS) and proxy_protocol together are not supported: the PROXY header "
        "would have to be read in plaintext before the handshake; terminate TLS at the "
        "proxy, or pass TLS through without the PROXY header");
  }
  if (options.transport != nullptr &&
      options.connection.handshake_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "connection.handshake_timeout must be > 0 (infinite: no limit)");
  }
  if (options.proxy_protocol && options.proxy_header_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("proxy_header_timeout must be > 0 (infinite: no limit)");
  }
  // Every reactor adopts through this one factory, from the acceptor thread
  // or its own reuse-port listener alike, so the header is read in both modes.
  if (options.proxy_protocol) {
    factory = WithProxyHeader(std::move(factory), options.proxy_header_timeout);
  }
  const int workers = options.workers > 0 ? options.workers : OnlineCpus();
  const bool reuse_port = options.accept_mode == AcceptMode::kReusePort;
  ListenOptions listen = options.listen;
  listen.reuse_port = listen.reuse_port || reuse_port;

  // One listener, or (reuse-port) one per reactor, all on the port the
  // first one got (which matters when asked for port 0).
  std::vector<Fd> listeners;
  Address address = options.address;
  for (int i = 0; i < (reuse_port ? workers : 1); ++i) {
    absl::StatusOr<Fd> listen_fd =
        adopted.valid() ? AdoptListeningSocket(adopted.Release()) : ListenTcp(address, listen);
    if (!listen_fd.ok()) return listen_fd.status();
    if (i == 0) {
      absl::StatusOr<Address> bound = LocalAddress(listen_fd->get());
      if (!bound.ok()) return bound.status();
      address = *bound;
    }
    listeners.push_back(std::move(*listen_fd));
  }

  std::unique_ptr<Server> server(new Server(options, address));
  std::vector<Reactor*> raw;
  for (int i = 0; i < workers; ++i) {
    ReactorOptions reactor_options;
    reactor_options.index = static_cast<uint32_t>(i);
    reactor_options.connection = options.connection;
    reactor_options.transport = options.transport;
    reactor_options.read_budget_bytes = options.read_budget_bytes;
    reactor_options.idle_timeout = options.idle_timeout;
    reactor_options.stall_threshold = options.stall_threshold;
    reactor_options.inbox_mail_capacity = options.inbox_mail_capacity;
    absl::StatusOr<std::unique_ptr<Reactor>> reactor = Reactor::Create(reactor_options, factory);
    if (!reactor.ok()) return reactor.status();
    raw.push_back(reactor->get());
    server->reactors_.push_back(std::move(*reactor));
  }
  server->draining_reactors_.store(workers);
  for (auto& reactor : server->reactors_) {
    reactor->set_peers(raw);
    reactor->set_drain_group(&server->draining_reactors_);
  }

  Server* self = server.get();
  Listener::OpenCount open_count = [self] { return self->OpenConnections(); };
  if (reuse_port) {
    for (size_t i = 0; i < listeners.size(); ++i) {
      auto listener =
          std::make_unique<Listener>(listeners[i].get(), options.max_connections, open_count);
      server->listeners_.push_back(listener.get());
      server->reactors_[i]->AddListener(std::move(listeners[i]), std::move(listener));
    }
  } else {
    Acceptor::Options acceptor_options;
    acceptor_options.max_connections = options.max_connections;
    acceptor_options.balance = options.balance;
    acceptor_options.open_count = open_count;
    absl::StatusOr<std::unique_ptr<Acceptor>> acceptor =
        Acceptor::Create(std::move(listeners[0]), std::move(raw), std::move(acceptor_options));
    if (!acceptor.ok()) return acceptor.status();
    server->acceptor_ = std::move(*acceptor);
  }
  return server;
}

uint64_t Server::OpenConnections() const {
  // Admitted (by the acceptor or the reactors' own listeners) minus closed,
  // where "closed" includes sockets a reactor closed before adopting them,
  // so a failed handoff cannot leave the count (and the gate) too high.
  uint64_t accepted = acceptor_ != nullptr ? acceptor_->counters().accepted.load() : 0;
  uint64_t closed = 0;
  for (const auto& reactor : reactors_) {
    if (acceptor_ == nullptr) accepted += reactor->AdmittedCount();
    closed += reactor->ClosedCount();
  }
  return accepted > closed ? accepted - closed : 0;
}

void Server::PauseAccepting(absl::AnyInvocable<void() &&> done) {
  SetAcceptPaused(true, std::move(done));
}

void Server::ResumeAccepting(absl::AnyInvocable<void() &&> done) {
  SetAcceptPaused(false, std::move(done));
}

void Server::SetAcceptPaused(bool paused, absl::AnyInvocable<void() &&> done) {
  accept_paused_.store(paused, std::memory_order_relaxed);
  if (acceptor_) {
    acceptor_->SetAcceptPaused(paused, std::move(done));
    return;
  }
  // One listener per reactor: `done` once the last of them has applied it.
  struct Join {
    std::atomic<size_t> left;
    absl::AnyInvocable<void() &&> done;
  };
  auto join = std::make_shared<Join>();
  join->left.store(reactors_.size());
  join->done = std::move(done);
  for (auto& reactor : reactors_) {
    reactor->SetAcceptPaused(paused, [join] {
      if (join->left.fetch_sub(1, std::memory_order_acq_rel) == 1 && join->done) {
        std::move(join->done)();
      }
    });
  }
}

void Server::SetMaxConnections(size_t max_connections) {
  if (acceptor_) acceptor_->SetMaxConnections(max_connections);
  for (Listener* listener : listeners_) listener->set_max_connections(max_connections);
}

size_t Server::max_connections() const {
  if (acceptor_) return acceptor_->max_connections();
  return listeners_.empty() ? 0 : listeners_.front()->max_connections();
}

Server::Server(const ServerOptions& options, Address address)
    : options_(options), address_(std::move(address)) {}

Server::~Server() { StopNow(); }

void Server::Start() {
  TROUPE_CHECK(threads_.empty(), "Server started twice");
  const int cpus = OnlineCpus();
  for (size_t i = 0; i < reactors_.size(); ++i) {
    threads_.emplace_back([r = reactors_[i].get()] { r->Run(); });
    if (options_.pin_cpus) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET((options_.first_cpu + static_cast<int>(i)) % cpus, &set);
      if (pthread_setaffinity_np(threads_.back().native_handle(), sizeof(set), &set) != 0) {
        TROUPE_LOG(kWarning, "could not pin reactor %d to a CPU", i);
      }
    }
  }
  if (acceptor_) acceptor_->Start();
  accepting_.store(true);
  serving_.store(true);
}

void Server::Stop() {
  if (threads_.empty()) return;
  serving_.store(false);
  const absl::Duration grace = options_.drain_grace;
  if (grace > absl::ZeroDuration()) {
    TROUPE_LOG(kInfo, "draining: health check failing, still accepting for %s",
               absl::FormatDuration(grace));
    if (aborted_.WaitForNotificationWithTimeout(grace)) {
      StopNow();
      return;
    }
  }
  accepting_.store(false);
  if (acceptor_) acceptor_->Stop();
  TROUPE_LOG(kInfo, "draining: stopped accepting; flushing open connections (up to %s)",
             absl::FormatDuration(options_.drain_timeout));
  const absl::Time deadline = absl::Now() + options_.drain_timeout;
  for (auto& reactor : reactors_) reactor->Drain(deadline);
  Join();
}

void Server::StopNow() {
  if (threads_.empty()) return;
  serving_.store(false);
  accepting_.store(false);
  if (acceptor_) acceptor_->Stop();
  for (auto& reactor : reactors_) reactor->StopNow();
  Join();
}

bool Server::SendMail(ConnectionId to, Mail mail) {
  if (to.reactor >= reactors_.size()) {
    // Counted where every other bad ref is: a reactor's invalid_ref.
    return reactors_[0]->SendMail(ConnectionId{}, std::move(mail));
  }
  return reactors_[to.reactor]->SendMail(to, std::move(mail));
}

void Server::Abort() {
  if (!abort_requested_.exchange(true)) aborted_.Notify();
  for (auto& reactor : reactors_) reactor->StopNow();
}

void Server::Join() {
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

ServerStats Server::Stats() const {
  ServerStats stats;
  for (const auto& reactor : reactors_) {
    stats.reactors.push_back(reactor->Stats());
    stats.refused += stats.reactors.back().refused;
    stats.rejected += stats.reactors.back().rejected;
  }
  if (acceptor_) {
    stats.refused += acceptor_->counters().refused.load(std::memory_order_relaxed);
    stats.rejected += acceptor_->counters().rejected.load(std::memory_order_relaxed);
  }
  return stats;
}

}  // namespace troupe
