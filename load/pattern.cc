#include "load/pattern.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace troupe::load {
namespace {

// Connection i starts its stream at (i * kSeedStride) mod the period:
// distinct for the first kPeriod connections (the period is prime), and far
// apart for neighbours (the stride is ~0.618 of the period).
constexpr uint64_t kSeedStride = 40503;

// The shared stream table: Stream::kPeriod pseudo-random bytes, then a copy
// of the first kStreamChunk of them, so that any chunk starting inside the
// period can be sent or compared as one contiguous range. Built once, then
// only read, by every thread.
const uint8_t* PatternTable() {
  static const uint8_t* const table = [] {
    constexpr uint64_t kPeriod = Stream::kPeriod;
    // Intentionally leaked: read by threads until process exit.
    auto* bytes = new uint8_t[kPeriod + kStreamChunk];
    // splitmix64 (Steele, Lea, Flood 2014): cheap and well mixed.
    uint64_t state = 0x9E3779B97F4A7C15u;
    for (uint64_t i = 0; i < kPeriod; ++i) {
      uint64_t z = (state += 0x9E3779B97F4A7C15u);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
      bytes[i] = static_cast<uint8_t>((z ^ (z >> 31)) >> 56);
    }
    // A forward loop, not memcpy: the slack is longer than the period, so
    // it copies bytes it has just written.
    for (uint64_t i = kPeriod; i < kPeriod + kStreamChunk; ++i) {
      bytes[i] = bytes[i - kPeriod];
    }
    return bytes;
  }();
  return table;
}

}  // namespace

Script::Script(const std::vector<std::string>& messages) {
  for (const std::string& m : messages) {
    bytes += m;
    ends.push_back(bytes.size());
  }
}

uint64_t SeedOf(int index) {
  return (static_cast<uint64_t>(index) * kSeedStride) % Stream::kPeriod;
}

Stream::Stream(uint64_t message_size) : pattern_(PatternTable()), message_size_(message_size) {}

Stream::Stream(const Script& script)
    : pattern_(PatternTable()),
      script_(reinterpret_cast<const uint8_t*>(script.bytes.data())),
      script_ends_(script.ends.data()),
      script_count_(script.ends.size()) {}

std::optional<std::string> CheckEcho(int connection, const uint8_t* expected, uint64_t received,
                                     uint64_t sent, const uint8_t* data, size_t n) {
  // The bytes beyond what was sent cannot be echoes; check the rest first so
  // a corrupted echo is reported as such.
  const size_t echo_len = static_cast<size_t>(std::min<uint64_t>(n, sent - received));
  if (std::memcmp(data, expected, echo_len) != 0) {
    size_t i = 0;
    while (data[i] == expected[i]) ++i;
    return absl::StrFormat(
        "connection %d: echo mismatch at stream offset %d: expected byte "
        "0x%02x, got 0x%02x",
        connection, received + i, expected[i], data[i]);
  }
  if (echo_len < n) {
    return absl::StrFormat(
        "connection %d: echo mismatch: received %d bytes up to stream offset "
        "%d, but only %d were sent",
        connection, n, received + n, sent);
  }
  return std::nullopt;
}

}  // namespace troupe::load
