#include "core/loop/acceptor.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/base/check.h"
#include "core/base/log.h"
#include "core/net/socket.h"

namespace troupe {
namespace {
// Connections accepted per wake before checking for Stop(): keeps a flood of
// connects from delaying shutdown.
constexpr int kMaxAcceptsPerWake = 256;

Fd OpenSpare() { return Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }
}  // namespace

Admission::Admission(int listen_fd, size_t max_connections, OpenCount open_count)
    : listen_fd_(listen_fd),
      spare_fd_(OpenSpare()),
      max_connections_(max_connections),
      open_count_(std::move(open_count)) {
  TROUPE_CHECK(max_connections_ == 0 || open_count_ != nullptr,
               "a connection limit needs an open-connection count");
}

Admission::Result Admission::AcceptOne(Handoff& out) {
  while (true) {
    sockaddr_storage storage;
    socklen_t len = sizeof(storage);
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&storage), &len,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      switch (errno) {
        case EINTR:
        case ECONNABORTED:  // the peer gave up while in the backlog
        case EPROTO:
          continue;
        case EAGAIN:
          return Result::kEmpty;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
          Shed(errno);
          return Result::kExhausted;
        default:
          TROUPE_LOG_EVERY_SECOND(kWarning, "accept: %s", std::strerror(errno));
          return Result::kFailed;
      }
    }
    if (max_connections_ > 0 && open_count_() >= max_connections_) {
      counters_.rejected.fetch_add(1, std::memory_order_relaxed);  // before the peer sees EOF
      ::close(fd);
      TROUPE_LOG_EVERY_SECOND(kWarning,
                              "max_connections (%d) reached; closing new connections "
                              "(%d rejected so far)",
                              max_connections_, counters_.rejected.load());
      return Result::kRejected;
    }
    (void)SetNoDelay(fd);  // best effort: failure only costs latency
    counters_.accepted.fetch_add(1, std::memory_order_relaxed);
    out.fd = fd;
    out.peer = Address::FromSockaddr(reinterpret_cast<sockaddr*>(&storage), len);
    return Result::kAdmitted;
  }
}

void Admission::Shed(int error) {
  spare_fd_.Reset();
  const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd >= 0) {
    counters_.refused.fetch_add(1, std::memory_order_relaxed);
    ::close(fd);
  }
  spare_fd_ = OpenSpare();
  TROUPE_LOG_EVERY_SECOND(kWarning,
                          "accept: %s; shedding new connections and pausing "
                          "%d ms (%d refused so far)",
                          std::strerror(error), kExhaustedPauseMs,
                          counters_.refused.load());
}

absl::StatusOr<std::unique_ptr<Acceptor>> Acceptor::Create(Fd listen_fd,
                                                          std::vector<Reactor*> reactors,
                                                          Options options) {
  TROUPE_CHECK(!reactors.empty(), "Acceptor needs at least one reactor");
  Fd stop(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!stop.valid()) return absl::ErrnoToStatus(errno, "eventfd for acceptor");
  return std::unique_ptr<Acceptor>(new Acceptor(std::move(listen_fd), std::move(stop),
                                                std::move(reactors), std::move(options)));
}

Acceptor::Acceptor(Fd listen_fd, Fd stop_fd, std::vector<Reactor*> reactors, Options options)
    : listen_fd_(std::move(listen_fd)),
      stop_fd_(std::move(stop_fd)),
      reactors_(std::move(reactors)),
      balance_(options.balance),
      admission_(listen_fd_.get(), options.max_connections, std::move(options.open_count)),
      handed_(reactors_.size(), 0) {
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
  Handoff handoff;
  for (int i = 0; i < kMaxAcceptsPerWake; ++i) {
    switch (admission_.AcceptOne(handoff)) {
      case Admission::Result::kAdmitted: {
        const size_t r = PickReactor();
        ++handed_[r];
        reactors_[r]->Adopt(tokens_[r], std::move(handoff));
        break;
      }
      case Admission::Result::kRejected:
        break;  // counts toward the batch, so Stop() is seen between batches
      case Admission::Result::kEmpty:
        return true;
      case Admission::Result::kExhausted:
      case Admission::Result::kFailed:
        return false;
    }
  }
  return true;
}

size_t Acceptor::PickReactor() {
  if (balance_ == Balance::kLeastLoaded) {
    // Fewest open: handed over by us minus closed by it. O(reactors).
    size_t best = 0;
    uint64_t best_open = UINT64_MAX;
    for (size_t i = 0; i < reactors_.size(); ++i) {
      const uint64_t closed = reactors_[i]->ClosedCount();
      const uint64_t open = handed_[i] > closed ? handed_[i] - closed : 0;
      if (open < best_open) {
        best_open = open;
        best = i;
      }
    }
    return best;
  }
  const size_t r = next_;
  next_ = next_ + 1 == reactors_.size() ? 0 : next_ + 1;
  return r;
}

}  // namespace troupe
