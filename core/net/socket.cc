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
  if (::bind(fd.get(), address.sockaddr_ptr(), address.length()) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("bind ", where));
  }
  if (::listen(fd.get(), options.backlog) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("listen ", where));
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
