#include "load/source_addresses.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/base/string_view_compat.h"

namespace troupe::load {
namespace {

// Share of one source address's ephemeral ports the automatic
// source_addresses choice plans to use: the rest is left for TIME_WAIT
// sockets and other programs.
constexpr double kPortsPerSourceShare = 0.8;
// LoadOptions::churn's automatic choice on a loopback target. Each cycle's
// orderly close leaves the client a TIME_WAIT, which holds its source port;
// net.ipv4.tcp_tw_reuse (2, the default: loopback only) lets connect() take
// such a port again once it is a second old. One address's ~28,000 ports
// (32768-60999) then carry some 14,000-28,000 cycles a second; eight carry
// well over 100,000, more than one machine's loopback server accepts.
constexpr int kChurnSourceAddresses = 8;

}  // namespace

absl::StatusOr<std::vector<Address>> SourceAddresses(const LoadOptions& options, int* count) {
  int n = options.source_addresses;
  const bool loopback_v4 =
      options.target.family() == AF_INET &&
      (ntohl(
           reinterpret_cast<const sockaddr_in*>(options.target.sockaddr_ptr())->sin_addr.s_addr) >>
       24) == 127;
  if (n == 0) {
    n = 1;
    int low = 0;
    int high = 0;
    std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
    if (loopback_v4 && (range >> low >> high) && high >= low) {
      const double per_source = (high - low + 1) * kPortsPerSourceShare;
      n = std::max(1, static_cast<int>(std::ceil(options.connections / per_source)));
      if (options.churn) n = std::max(n, kChurnSourceAddresses);
    }
  }
  *count = n;
  std::vector<Address> sources;
  if (n == 1) return sources;
  if (!loopback_v4) {
    return absl::InvalidArgumentError(absl::StrCat("source addresses 127.0.0.1..127.0.0.", n,
                                                   " need a 127.x target, not ",
                                                   options.target.ToString()));
  }
  for (int i = 1; i <= n; ++i) {
    absl::StatusOr<Address> a =
        Address::FromHostPort(AsStd(absl::StrCat("127.0.", i / 256, ".", i % 256)), 0);
    if (!a.ok()) return a.status();
    sources.push_back(*a);
  }
  return sources;
}

}  // namespace troupe::load
