#include "core/net/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace troupe {
namespace {

using Result = ProxyHeaderResult;

constexpr std::string_view kV1Signature = "PROXY ";
constexpr std::string_view kV2Signature("\r\n\r\n\0\r\nQUIT\n", 12);
constexpr size_t kV2FixedBytes = 16;

// v2's nibbles (byte 13: version and command; byte 14: family and transport).
constexpr uint8_t kV2Version = 2;
constexpr uint8_t kCommandLocal = 0;
constexpr uint8_t kCommandProxy = 1;
constexpr uint8_t kFamilyUnspec = 0;
constexpr uint8_t kFamilyInet = 1;
constexpr uint8_t kFamilyInet6 = 2;
constexpr uint8_t kFamilyUnix = 3;
constexpr uint8_t kTransportUnspec = 0;
constexpr uint8_t kTransportStream = 1;
constexpr uint8_t kTransportDgram = 2;

Result NeedMore() { return Result{}; }

Result Invalid(const char* error) {
  Result r;
  r.outcome = Result::Outcome::kInvalid;
  r.error = error;
  return r;
}

Result Done(int version, size_t size) {
  Result r;
  r.outcome = Result::Outcome::kDone;
  r.version = version;
  r.size = size;
  return r;
}

// True if `data` and `expected` agree on their common length: `data` may
// still become (or already begins with) `expected`.
bool AgreesWith(std::string_view data, std::string_view expected) {
  const size_t n = std::min(data.size(), expected.size());
  return data.substr(0, n) == expected.substr(0, n);
}

// --- Version 1 ---------------------------------------------------------------

// What the address and port fields of a TCP4 (TCP6) line may hold: anything
// else can never parse, so it is rejected before the line is complete.
bool V1FieldChar(char c, bool v6) {
  if ((c >= '0' && c <= '9') || c == '.' || c == ' ') return true;
  return v6 && (c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));
}

// What is wrong with the beginning of a v1 line (without its CRLF; complete
// or not), or nullptr if it may still become a valid line. Run on every
// call, complete lines included, so that a prefix is never rejected for
// something the complete line would pass.
const char* CheckV1Prefix(std::string_view line) {
  if (!AgreesWith(line, kV1Signature)) return "bad v1 signature";
  if (line.size() <= kV1Signature.size()) return nullptr;
  const std::string_view rest = line.substr(kV1Signature.size());
  constexpr std::string_view kUnknown = "UNKNOWN";
  if (AgreesWith(rest, kUnknown)) {
    // Anything may follow UNKNOWN, after a space.
    if (rest.size() > kUnknown.size() && rest[kUnknown.size()] != ' ') return "bad v1 protocol";
    return nullptr;
  }
  for (const bool v6 : {false, true}) {
    const std::string_view word = v6 ? "TCP6 " : "TCP4 ";
    if (!AgreesWith(rest, word)) continue;
    if (rest.size() <= word.size()) return nullptr;
    bool after_space = true;  // the word ends with one
    int spaces = 0;
    for (const char c : rest.substr(word.size())) {
      if (!V1FieldChar(c, v6)) return "bad character in a v1 field";
      if (c == ' ') {
        if (after_space) return "v1 fields not separated by single spaces";
        if (++spaces > 3) return "too many v1 fields";
      }
      after_space = c == ' ';
    }
    return nullptr;
  }
  return "bad v1 protocol";
}

// Decimal 0..65535, no sign, no leading zero beyond "0" itself.
bool ParseV1Port(std::string_view text, uint16_t& port) {
  if (text.empty() || text.size() > 5) return false;
  if (text.size() > 1 && text[0] == '0') return false;
  uint32_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) return false;
  port = static_cast<uint16_t>(value);
  return true;
}

// A numeric address of the stated family (inet_pton: dotted quad without
// leading zeros, or IPv6 text) and its port.
bool ParseV1Address(std::string_view host, std::string_view port_text, bool v6, Address& out) {
  char text[INET6_ADDRSTRLEN];
  if (host.empty() || host.size() >= sizeof(text)) return false;
  std::memcpy(text, host.data(), host.size());
  text[host.size()] = '\0';
  uint16_t port = 0;
  if (!ParseV1Port(port_text, port)) return false;
  if (v6) {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(port);
    if (::inet_pton(AF_INET6, text, &sa.sin6_addr) != 1) return false;
    out = Address::FromSockaddr(reinterpret_cast<const sockaddr*>(&sa), sizeof(sa));
  } else {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (::inet_pton(AF_INET, text, &sa.sin_addr) != 1) return false;
    out = Address::FromSockaddr(reinterpret_cast<const sockaddr*>(&sa), sizeof(sa));
  }
  return true;
}

Result ParseV1(std::string_view data) {
  // Nothing past the longest line matters: without a CRLF by then, invalid.
  const std::string_view window = data.substr(0, kProxyV1MaxBytes);
  const bool window_full = window.size() >= kProxyV1MaxBytes;
  const size_t end = window.find_first_of("\r\n");
  const std::string_view line = window.substr(0, end);
  if (const char* error = CheckV1Prefix(line)) return Invalid(error);
  if (end == std::string_view::npos) {
    return window_full ? Invalid("v1 line longer than 107 bytes") : NeedMore();
  }
  if (window[end] == '\n') return Invalid("v1 line ends in LF without CR");
  if (end + 1 == window.size()) {
    return window_full ? Invalid("v1 line longer than 107 bytes") : NeedMore();
  }
  if (window[end + 1] != '\n') return Invalid("v1 CR without LF");

  // A complete line, whose beginning CheckV1Prefix has vetted.
  const size_t size = end + 2;
  if (line.size() <= kV1Signature.size()) return Invalid("bad v1 protocol");
  const std::string_view rest = line.substr(kV1Signature.size());
  if (rest.substr(0, 7) == "UNKNOWN") return Done(1, size);
  if (rest.size() < 5 || rest[4] != ' ') return Invalid("bad v1 protocol");
  const bool v6 = rest[3] == '6';
  std::string_view fields[4];
  std::string_view remaining = rest.substr(5);
  for (int i = 0; i < 4; ++i) {
    const size_t space = remaining.find(' ');
    fields[i] = remaining.substr(0, space);
    remaining = space == std::string_view::npos ? std::string_view() : remaining.substr(space + 1);
    if (fields[i].empty()) return Invalid("missing v1 field");
  }
  Address source;
  Address destination;
  if (!ParseV1Address(fields[0], fields[2], v6, source)) {
    return Invalid("bad v1 source address or port");
  }
  if (!ParseV1Address(fields[1], fields[3], v6, destination)) {
    return Invalid("bad v1 destination address or port");
  }
  Result r = Done(1, size);
  r.source = source;
  r.destination = destination;
  return r;
}

// --- Version 2 ---------------------------------------------------------------

Result ParseV2(std::string_view data) {
  if (!AgreesWith(data, kV2Signature)) return Invalid("bad v2 signature");
  if (data.size() <= kV2Signature.size()) return NeedMore();
  const auto* b = reinterpret_cast<const uint8_t*>(data.data());
  if ((b[12] >> 4) != kV2Version) return Invalid("bad v2 version");
  const uint8_t command = b[12] & 0x0F;
  if (command != kCommandLocal && command != kCommandProxy) return Invalid("bad v2 command");
  if (data.size() < 14) return NeedMore();
  const uint8_t family = b[13] >> 4;
  const uint8_t transport = b[13] & 0x0F;
  // LOCAL (a proxy's own health check) carries no client: the spec says its
  // whole protocol block, family byte included, is to be ignored.
  if (command == kCommandProxy && (family > kFamilyUnix || transport > kTransportDgram)) {
    return Invalid("bad v2 address family or transport");
  }
  // The address block PROXY must carry; LOCAL's block is ignored whole.
  size_t block = 0;
  if (command == kCommandProxy) {
    if (family == kFamilyUnspec) {
      if (transport != kTransportUnspec) return Invalid("v2 AF_UNSPEC with a transport");
    } else if (transport != kTransportStream) {
      return Invalid("v2 PROXY for a transport other than a stream");
    }
    block = family == kFamilyInet    ? 12
            : family == kFamilyInet6 ? 36
            : family == kFamilyUnix  ? 216
                                     : 0;
  }
  if (data.size() < kV2FixedBytes) return NeedMore();
  const size_t length = size_t{b[14]} << 8 | b[15];
  if (length < block) return Invalid("v2 length shorter than its address block");
  const size_t size = kV2FixedBytes + length;
  if (data.size() < size) return NeedMore();

  Result r = Done(2, size);
  if (command == kCommandLocal || family == kFamilyUnspec) return r;
  // TLVs follow the addresses; skipped, but they must tile the block.
  for (size_t at = kV2FixedBytes + block; at < size;) {
    if (size - at < 3) return Invalid("v2 TLV header cut short");
    const size_t tlv = size_t{b[at + 1]} << 8 | b[at + 2];
    if (tlv > size - at - 3) return Invalid("v2 TLV longer than the header");
    at += 3 + tlv;
  }
  const uint8_t* a = b + kV2FixedBytes;
  if (family == kFamilyInet) {
    sockaddr_in source{};
    sockaddr_in destination{};
    source.sin_family = destination.sin_family = AF_INET;
    std::memcpy(&source.sin_addr, a, 4);
    std::memcpy(&destination.sin_addr, a + 4, 4);
    std::memcpy(&source.sin_port, a + 8, 2);  // both in network order
    std::memcpy(&destination.sin_port, a + 10, 2);
    r.source = Address::FromSockaddr(reinterpret_cast<const sockaddr*>(&source), sizeof(source));
    r.destination =
        Address::FromSockaddr(reinterpret_cast<const sockaddr*>(&destination), sizeof(destination));
  } else if (family == kFamilyInet6) {
    sockaddr_in6 source{};
    sockaddr_in6 destination{};
    source.sin6_family = destination.sin6_family = AF_INET6;
    std::memcpy(&source.sin6_addr, a, 16);
    std::memcpy(&destination.sin6_addr, a + 16, 16);
    std::memcpy(&source.sin6_port, a + 32, 2);
    std::memcpy(&destination.sin6_port, a + 34, 2);
    r.source = Address::FromSockaddr(reinterpret_cast<const sockaddr*>(&source), sizeof(source));
    r.destination =
        Address::FromSockaddr(reinterpret_cast<const sockaddr*>(&destination), sizeof(destination));
  }
  // AF_UNIX: local (see the header).
  return r;
}

}  // namespace

ProxyHeaderResult ParseProxyHeader(std::string_view data) {
  if (data.empty()) return NeedMore();
  // The first byte tells the versions apart: 'P' begins v1, '\r' v2.
  if (data[0] == kV1Signature[0]) return ParseV1(data);
  if (data[0] == kV2Signature[0]) return ParseV2(data);
  return Invalid("not a PROXY protocol header");
}

}  // namespace troupe
