// Address: an IPv4 or IPv6 socket address, parsed from text and printed back.
//
//   absl::StatusOr<Address> a = Address::Parse("127.0.0.1:7007");
//   absl::StatusOr<Address> b = Address::FromHostPort("::1", 7007);
//   a->ToString();   // "127.0.0.1:7007"; IPv6 prints as "[::1]:7007"
//
// Accepted text: "1.2.3.4:port", "[v6]:port", and a host name resolved once
// through getaddrinfo (e.g. "localhost"); that lookup may block, so call
// Parse at setup time, never on a reactor thread.
//
// Thread safety: thread-compatible (a plain value).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace troupe {

class Address {
 public:
  Address() = default;

  // Parses "host:port" (IPv6 hosts in brackets).
  static absl::StatusOr<Address> Parse(std::string_view host_port);
  // Parses a host (numeric IPv4/IPv6, brackets optional for IPv6, or a name).
  static absl::StatusOr<Address> FromHostPort(std::string_view host, uint16_t port);
  // Wraps what the kernel returned (accept, getsockname).
  static Address FromSockaddr(const sockaddr* sa, socklen_t len);

  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t length() const { return length_; }
  int family() const { return storage_.sa.sa_family; }
  uint16_t port() const;
  void set_port(uint16_t port);

  // "127.0.0.1:7007" or "[::1]:7007".
  std::string ToString() const;
  // The host part alone, without brackets: "127.0.0.1", "::1".
  std::string HostString() const;

 private:
  // Only IPv4 and IPv6 are spoken here, so 28 bytes instead of
  // sockaddr_storage's 128: every connection and handoff carries one.
  union Storage {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
  };
  Storage storage_{};
  socklen_t length_ = 0;
};

}  // namespace troupe
