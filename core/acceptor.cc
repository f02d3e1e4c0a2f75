#include "core/acceptor.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/check.h"
#include "core/log.h"
#include "core/socket.h"

namespace troupe {
namespace {
// Connections accepted per wake before checking for Stop(): keeps a flood of
// connects from delaying shutdown.
constexpr int kMaxAcceptsPerWake = 256;
// How long to stop accepting after descriptors ran out. Long enough not to
// burn CPU on a full table, short enough that service resumes promptly.
constexpr int kExhaustedPauseMs = 100;

Fd OpenSpare() { return Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }
}  // namespace

absl::StatusOr<std::unique_ptr<Acceptor>> Acceptor::Create(
    Fd listen_fd, std::vector<Reactor*> reactors, size_t max_connections) {
  TROUPE_CHECK(!reactors.empty(), "Acceptor needs at least one reactor");
  Fd stop(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!stop.valid()) return absl::ErrnoToStatus(errno, "eventfd for acceptor");
  return std::unique_ptr<Acceptor>(
      new Acceptor(std::move(listen_fd), std::move(stop), std::move(reactors),
                   max_connections));
}

Acceptor::Acceptor(Fd listen_fd, Fd stop_fd, std::vector<Reactor*> reactors,
                   size_t max_connections)
    : listen_fd_(std::move(listen_fd)),
      stop_fd_(std::move(stop_fd)),
      spare_fd_(OpenSpare()),
      reactors_(std::move(reactors)),
      max_connections_(max_connections) {
  tokens_.reserve(reactors_.size());
  for (Reactor* r : reactors_) tokens_.push_back(r->MakeHandoffToken());
}

Acceptor::~Acceptor() { Stop(); }

void Acceptor::Start() {
  TROUPE_CHECK(!thread_.joinable(), "Acceptor started twice");
  thread_ = std::thread([this] { Loop(); });
}

void Acceptor::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  while (::write(stop_fd_.get(), &one, sizeof(one)) < 0 && errno == EINTR) {
  }
  thread_.join();
  listen_fd_.Reset();  // refuse further connects at once
}

void Acceptor::Loop() {
  pollfd fds[2] = {{stop_fd_.get(), POLLIN, 0}, {listen_fd_.get(), POLLIN, 0}};
  int pause_ms = -1;
  while (true) {
    // While paused, watch only the stop fd, with a timeout.
    const int rc = ::poll(fds, pause_ms >= 0 ? 1 : 2, pause_ms);
    if (rc < 0 && errno != EINTR) {
      TROUPE_LOG(kError, "acceptor: poll failed: %s; no longer accepting",
                 std::strerror(errno));
      return;
    }
    if (fds[0].revents & POLLIN) return;
    pause_ms = AcceptBatch() ? -1 : kExhaustedPauseMs;
  }
}

bool Acceptor::AcceptBatch() {
  for (int i = 0; i < kMaxAcceptsPerWake; ++i) {
    sockaddr_storage storage;
    socklen_t len = sizeof(storage);
    const int fd = ::accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&storage),
                             &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      switch (errno) {
        case EAGAIN:
        case EINTR:
        case ECONNABORTED:  // the peer gave up while in the backlog
        case EPROTO:
          return true;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
          ShedOne();
          return false;
        default:
          TROUPE_LOG_EVERY_SECOND(kWarning, "accept: %s", std::strerror(errno));
          return false;  // pause rather than spin on an unexpected error
      }
    }
    if (max_connections_ > 0 && OpenConnections() >= max_connections_) {
      rejected_.fetch_add(1, std::memory_order_relaxed);  // counted before the peer sees EOF
      ::close(fd);
      TROUPE_LOG_EVERY_SECOND(kWarning,
                              "max_connections (%d) reached; closing new connections "
                              "(%d rejected so far)",
                              max_connections_, rejected());
      continue;
    }
    (void)SetNoDelay(fd);  // best effort: failure only costs latency
    accepted_.fetch_add(1, std::memory_order_relaxed);
    const size_t i_reactor = next_;
    next_ = next_ + 1 == reactors_.size() ? 0 : next_ + 1;
    reactors_[i_reactor]->Adopt(
        tokens_[i_reactor],
        Handoff{fd, Address::FromSockaddr(reinterpret_cast<sockaddr*>(&storage), len)});
  }
  return true;
}

void Acceptor::ShedOne() {
  const int saved_errno = errno;
  spare_fd_.Reset();
  const int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd >= 0) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    ::close(fd);
  }
  spare_fd_ = OpenSpare();
  TROUPE_LOG_EVERY_SECOND(kWarning,
                          "accept: %s; shedding new connections and pausing "
                          "%d ms (%d refused so far)",
                          std::strerror(saved_errno), kExhaustedPauseMs, refused());
}

uint64_t Acceptor::OpenConnections() const {
  uint64_t closed = 0;
  for (const Reactor* r : reactors_) closed += r->ClosedCount();
  const uint64_t handed = accepted();
  return handed > closed ? handed - closed : 0;
}

}  // namespace troupe
