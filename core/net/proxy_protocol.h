// ParseProxyHeader: the PROXY protocol header (HAProxy's `send-proxy` and
// `send-proxy-v2`) a load balancer puts in front of a client's first byte,
// saying which client it relays. A strict, pure parser of the bytes received
// so far; the connection side is core/loop/proxy_header.h.
//
//   ProxyHeaderResult r = ParseProxyHeader(received);
//   if (r.need_more()) return 0;                  // wait for more bytes
//   if (r.invalid()) Close(r.error);              // e.g. "bad v2 signature"
//   if (r.source) peer = *r.source;               // else "local": keep the socket's
//   data.remove_prefix(r.size);                   // the client's own bytes follow
//
// Version 1, one text line of at most 107 bytes:
//   "PROXY TCP4 <src> <dst> <sport> <dport>\r\n"   (TCP6 alike)
//   "PROXY UNKNOWN[ <anything>]\r\n"               local
// with single spaces, addresses that parse as the stated family, decimal
// ports 0..65535 without leading zeros, and no CR or LF before the CRLF.
//
// Version 2, binary: the 12-byte signature, version 2 and a command (LOCAL 0,
// PROXY 1), the family and transport byte, a big-endian 16-bit length, then
// that many bytes: the address block, then TLVs (type, 16-bit length, value),
// which are skipped but must tile the rest of the block exactly.
//   LOCAL, any family byte:         local (the proxy's own connection, e.g. a
//                                   health check); the block, family byte
//                                   included, is ignored, as the spec asks
//   PROXY, TCP over IPv4 or IPv6:   the source and destination addresses
//   PROXY, AF_UNSPEC (0x00):        local, as the specification asks
//   PROXY, AF_UNIX stream:          local: a path names no peer we could
//                                   report, and the socket's own (the proxy)
//                                   is the honest answer, as v1 UNKNOWN
//   PROXY, any datagram transport:  invalid: a stream listener cannot be
//                                   relaying a datagram flow, so the sender is
//                                   confused or not a proxy at all (the spec
//                                   allows it; we depart from it on purpose)
//   undefined version or command, or (PROXY) family or transport: invalid
//
// Early rejection: the first byte chooses the version ('P' or '\r'), and as
// soon as the bytes seen cannot begin a valid header the answer is invalid, so
// a client that sends plain data ("GET / HTTP/1.1") is rejected at once, not
// after a timeout; a v2 length too short for its address block is rejected
// before the block arrives. The answers are monotone: once invalid or done for
// some bytes, the same for any bytes that begin with them, so a caller may
// parse again from the start whenever more arrive.
//
// Thread safety: thread-safe (a pure function).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "core/net/address.h"

namespace troupe {

// The longest header of each version, and of either: a connection awaiting
// its header never needs to hold more than kProxyHeaderMaxBytes.
inline constexpr size_t kProxyV1MaxBytes = 107;
inline constexpr size_t kProxyV2MaxBytes = 16 + 65535;
inline constexpr size_t kProxyHeaderMaxBytes = kProxyV2MaxBytes;

// What ParseProxyHeader made of the bytes received so far.
struct ProxyHeaderResult {
  enum class Outcome : uint8_t { kNeedMore, kInvalid, kDone };
  Outcome outcome = Outcome::kNeedMore;
  // kInvalid: why, a short static string ("bad v2 signature").
  const char* error = nullptr;
  // kDone: the header's length in bytes; the client's own bytes follow it.
  size_t size = 0;
  // kDone: 1 or 2.
  int version = 0;
  // kDone, PROXY over TCP/IPv4 or TCP/IPv6: the client, and the address it
  // connected to. Absent ("local"): keep the socket's own peer address.
  std::optional<Address> source;
  std::optional<Address> destination;

  bool need_more() const { return outcome == Outcome::kNeedMore; }
  bool invalid() const { return outcome == Outcome::kInvalid; }
  bool done() const { return outcome == Outcome::kDone; }
  bool local() const { return done() && !source.has_value(); }
};

// Parses the header at the start of `data`, every byte received so far.
ProxyHeaderResult ParseProxyHeader(std::string_view data);

}  // namespace troupe
