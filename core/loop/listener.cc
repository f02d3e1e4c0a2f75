#include "core/loop/listener.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/base/check.h"
#include "core/base/log.h"
#include "core/net/socket.h"

namespace troupe {
namespace {
Fd OpenSpare() { return Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }
}  // namespace

Listener::Listener(int listen_fd, size_t max_connections, OpenCount open_count)
    : listen_fd_(listen_fd),
      spare_fd_(OpenSpare()),
      max_connections_(max_connections),
      open_count_(std::move(open_count)) {
  TROUPE_CHECK(max_connections == 0 || open_count_ != nullptr,
               "a connection limit needs an open-connection count");
}

void Listener::set_max_connections(size_t max_connections) {
  TROUPE_CHECK(max_connections == 0 || open_count_ != nullptr,
               "a connection limit needs an open-connection count");
  max_connections_.store(max_connections, std::memory_order_relaxed);
}

Listener::Result Listener::AcceptOne(Handoff& out) {
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
    const size_t max_connections = max_connections_.load(std::memory_order_relaxed);
    if (max_connections > 0 && open_count_() >= max_connections) {
      counters_.rejected.fetch_add(1, std::memory_order_relaxed);  // before the peer sees EOF
      ::close(fd);
      TROUPE_LOG_EVERY_SECOND(kWarning,
                              "max_connections (%d) reached; closing new connections "
                              "(%d rejected so far)",
                              max_connections, counters_.rejected.load());
      return Result::kRejected;
    }
    (void)SetNoDelay(fd);  // best effort: failure only costs latency
    counters_.accepted.fetch_add(1, std::memory_order_relaxed);
    out.fd = fd;
    out.peer = Address::FromSockaddr(reinterpret_cast<sockaddr*>(&storage), len);
    return Result::kAdmitted;
  }
}

void Listener::Shed(int error) {
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
                          std::strerror(error), kExhaustedPauseMs, counters_.refused.load());
}

}  // namespace troupe
