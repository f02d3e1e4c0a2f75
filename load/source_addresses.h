// The source addresses a run's connections bind to: 127.0.0.1 .. 127.0.0.N
// round robin, so that more connections than one source's ephemeral ports
// can reach one loopback target. N is LoadOptions::source_addresses, or, when
// that is 0, as many as the local port range needs (usually 1; with
// LoadOptions::churn 8 at least, for the TIME_WAITs its closes leave).
//
//   int count = 1;
//   absl::StatusOr<std::vector<Address>> sources =
//       SourceAddresses(options, &count);  // Empty: no explicit bind.
//
// Thread safety: thread-safe (reads /proc, shares nothing).
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "core/net/address.h"
#include "load/load_client.h"

namespace troupe::load {

// Source addresses 127.0.0.1 .. 127.0.0.N, or none when the kernel may
// choose (N == 1); sets `*count` to N. Fails when N > 1 and the target is
// not an IPv4 127.x address.
absl::StatusOr<std::vector<Address>> SourceAddresses(const LoadOptions& options, int* count);

}  // namespace troupe::load
