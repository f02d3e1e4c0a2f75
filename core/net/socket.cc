#include "core/net/socket.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace troupe {
namespace {

absl::Status SetIntOption(int fd, int level, int name, const char* what) {
  const int one = 1;
  if (::setsockopt(fd, level, name, &one, sizeof(one)) != 0) {
    return absl::ErrnoToStatus(errno, what);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Fd> ListenTcp(const Address& address, const ListenOptions& options) {
  const std::string where = address.ToString();
  Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd.valid()) {
    return absl::ErrnoToStatus(errno, absl::StrCat("socket for ", where));
  }
  if (auto s = SetIntOption(fd.get(), SOL_SOCKET, SO_REUSEADDR, "setsockopt SO_REUSEADDR");
      !s.ok()) {
    return s;
  }
  if (options.reuse_port) {
    if (auto s = SetIntOption(fd.get(), SOL_SOCKET, SO_REUSEPORT, "setsockopt SO_REUSEPORT");
        !s.ok()) {
      return s;
    }
  }
  if (options.defer_accept_seconds > 0 &&
      ::setsockopt(fd.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &options.defer_accept_seconds,
                   sizeof(options.defer_accept_seconds)) != 0) {
    return absl::ErrnoToStatus(errno, "setsockopt TCP_DEFER_ACCEPT");
  }
  if (::bind(fd.get(), address.sockaddr_ptr(), address.length()) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("bind ", where));
  }
  if (::listen(fd.get(), options.backlog) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("listen ", where));
  }
  return fd;
}

absl::StatusOr<Fd> AdoptListeningSocket(int raw) {
  Fd fd(raw);
  const std::string where = absl::StrCat("adopt fd ", raw);
  auto get = [&](int name, const char* what) -> absl::StatusOr<int> {
    int value = 0;
    socklen_t len = sizeof(value);
    if (::getsockopt(fd.get(), SOL_SOCKET, name, &value, &len) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat(where, ": getsockopt ", what));
    }
    return value;
  };
  absl::StatusOr<int> accepting = get(SO_ACCEPTCONN, "SO_ACCEPTCONN");
  if (!accepting.ok()) return accepting.status();  // ENOTSOCK for a file, EBADF for no fd
  if (*accepting == 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not a listening socket"));
  }
  absl::StatusOr<int> type = get(SO_TYPE, "SO_TYPE");
  if (!type.ok()) return type.status();
  absl::StatusOr<int> domain = get(SO_DOMAIN, "SO_DOMAIN");
  if (!domain.ok()) return domain.status();
  // A Unix stream listener would pass SO_TYPE, but TCP_NODELAY and peer
  // addresses assume TCP.
  if (*type != SOCK_STREAM || (*domain != AF_INET && *domain != AF_INET6)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": not a TCP (IPv4 or IPv6 stream) socket"));
  }
  if (auto s = SetNonBlocking(fd.get()); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(where, ": ", s.message()));
  }
  // Inherited descriptors come without CLOEXEC (systemd clears it for us),
  // and a child we start must not keep our listener alive.
  const int flags = ::fcntl(fd.get(), F_GETFD);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFD, flags | FD_CLOEXEC) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(where, ": fcntl FD_CLOEXEC"));
  }
  return fd;
}

absl::StatusOr<Fd> ConnectTcpNonBlocking(const Address& address, const Address* source) {
  const std::string where = address.ToString();
  Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd.valid()) {
    return absl::ErrnoToStatus(errno, absl::StrCat("socket for ", where));
  }
  if (source != nullptr) {
    // Lets the kernel share ephemeral ports across source addresses.
    (void)SetIntOption(fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT,
                       "setsockopt IP_BIND_ADDRESS_NO_PORT");
    if (::bind(fd.get(), source->sockaddr_ptr(), source->length()) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("bind source ", source->ToString()));
    }
  }
  if (::connect(fd.get(), address.sockaddr_ptr(), address.length()) != 0 && errno != EINPROGRESS) {
    return absl::ErrnoToStatus(errno, absl::StrCat("connect ", where));
  }
  if (auto s = SetNoDelay(fd.get()); !s.ok()) return s;
  return fd;
}

absl::StatusOr<Fd> ConnectTcpBlocking(const Address& address) {
  const std::string where = address.ToString();
  Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd.valid()) {
    return absl::ErrnoToStatus(errno, absl::StrCat("socket for ", where));
  }
  int rc;
  do {
    rc = ::connect(fd.get(), address.sockaddr_ptr(), address.length());
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return absl::ErrnoToStatus(errno, absl::StrCat("connect ", where));
  if (auto s = SetNoDelay(fd.get()); !s.ok()) return s;
  return fd;
}

absl::StatusOr<Address> LocalAddress(int fd) {
  sockaddr_storage storage{};
  socklen_t len = sizeof(storage);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &len) != 0) {
    return absl::ErrnoToStatus(errno, "getsockname");
  }
  return Address::FromSockaddr(reinterpret_cast<sockaddr*>(&storage), len);
}

absl::Status SetNoDelay(int fd) {
  return SetIntOption(fd, IPPROTO_TCP, TCP_NODELAY, "setsockopt TCP_NODELAY");
}

absl::Status SetNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return absl::ErrnoToStatus(errno, "fcntl O_NONBLOCK");
  }
  return absl::OkStatus();
}

}  // namespace troupe
