#include "core/net/address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/base/string_view_compat.h"

namespace troupe {

absl::StatusOr<Address> Address::Parse(std::string_view host_port) {
  std::string_view host;
  std::string_view port_text;
  if (!host_port.empty() && host_port.front() == '[') {
    const size_t close = host_port.find(']');
    if (close == std::string_view::npos || close + 1 >= host_port.size() ||
        host_port[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("bad address '", AsAbsl(host_port), "': expected [ipv6]:port"));
    }
    host = host_port.substr(1, close - 1);
    port_text = host_port.substr(close + 2);
  } else {
    const size_t colon = host_port.rfind(':');
    if (colon == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad address '", AsAbsl(host_port), "': expected host:port"));
    }
    host = host_port.substr(0, colon);
    if (host.find(':') != std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad address '", AsAbsl(host_port), "': put IPv6 hosts in brackets"));
    }
    port_text = host_port.substr(colon + 1);
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(AsAbsl(port_text), &port) || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad address '", AsAbsl(host_port), "': port must be 0..65535"));
  }
  return FromHostPort(host, static_cast<uint16_t>(port));
}

absl::StatusOr<Address> Address::FromHostPort(std::string_view host, uint16_t port) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) {
    return absl::InvalidArgumentError("bad address: empty host");
  }
  const std::string host_z(host);
  Address address;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address.storage_);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&address.storage_);
  if (::inet_pton(AF_INET, host_z.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    address.length_ = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, host_z.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    address.length_ = sizeof(sockaddr_in6);
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* result = nullptr;
    const int rc = ::getaddrinfo(host_z.c_str(), nullptr, &hints, &result);
    if (rc != 0 || result == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad address: cannot resolve host '", AsAbsl(host),
                       "': ", rc != 0 ? ::gai_strerror(rc) : "no result"));
    }
    if (result->ai_addrlen > sizeof(address.storage_)) {
      ::freeaddrinfo(result);
      return absl::InvalidArgumentError(
          absl::StrCat("bad address: host '", AsAbsl(host), "' is not IPv4 or IPv6"));
    }
    std::memcpy(&address.storage_, result->ai_addr, result->ai_addrlen);
    address.length_ = result->ai_addrlen;
    ::freeaddrinfo(result);
  }
  address.set_port(port);
  return address;
}

Address Address::FromSockaddr(const sockaddr* sa, socklen_t len) {
  Address address;
  if (len > sizeof(address.storage_)) len = sizeof(address.storage_);
  std::memcpy(&address.storage_, sa, len);
  address.length_ = len;
  return address;
}

uint16_t Address::port() const {
  if (family() == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  }
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

void Address::set_port(uint16_t port) {
  if (family() == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
  } else if (family() == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
  }
}

std::string Address::HostString() const {
  char text[INET6_ADDRSTRLEN] = "";
  if (family() == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, text,
                sizeof(text));
  } else if (family() == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, text,
                sizeof(text));
  } else {
    return "?";
  }
  return text;
}

std::string Address::ToString() const {
  if (family() == AF_INET6) return absl::StrCat("[", HostString(), "]:", port());
  return absl::StrCat(HostString(), ":", port());
}

}  // namespace troupe
