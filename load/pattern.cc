#include "load/pattern.h"

#include <algorithm>
#include <cstring>
#include <memory>

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

// A framed table holds whole frames for at least this many bytes (or 65,521
// frames, or two), so that many connections get streams of their own: 16,411
// frames of 64 bytes, 257 of 4 KiB. About 1 MiB against the raw table's
// 128 KiB, built once per run; the largest, two 16 MiB frames.
constexpr uint64_t kMinFramedTableBytes = uint64_t{1} << 20;

bool IsPrime(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d) {
    if (n % d == 0) return false;
  }
  return true;
}

// Frames in a framed table of `message_size`-byte frames: a prime, so that a
// server repeating a block of a power-of-two number of frames is caught
// (as the raw period is); O(sqrt) trial division over at most 65,521.
uint64_t FramesFor(uint64_t message_size) {
  uint64_t frames = (kMinFramedTableBytes + message_size - 1) / message_size;
  frames = std::min<uint64_t>(std::max<uint64_t>(frames, 2), Stream::kPeriod);
  while (!IsPrime(frames)) ++frames;  // Ends at kPeriod at the latest.
  return frames;
}

// Fills [data, data + n) with splitmix64 output, eight bytes per step.
void FillPseudoRandom(uint64_t& state, uint8_t* data, uint64_t n) {
  for (uint64_t i = 0; i < n; i += 8) {
    uint64_t z = (state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    z ^= z >> 31;
    const uint64_t take = std::min<uint64_t>(8, n - i);
    std::memcpy(data + i, &z, static_cast<size_t>(take));
  }
}

// `frames` frames of `size` bytes each, then the first kStreamChunk bytes
// again (see the drawing in pattern.h).
std::unique_ptr<uint8_t[]> BuildFramedTable(LoadFraming framing, uint64_t size, uint64_t frames) {
  const uint64_t period = size * frames;
  std::unique_ptr<uint8_t[]> table(new uint8_t[period + kStreamChunk]);
  uint64_t state = 0x6A09E667F3BCC908u;  // Any start; not the raw table's.
  for (uint64_t f = 0; f < frames; ++f) {
    uint8_t* frame = table.get() + f * size;
    if (framing == LoadFraming::kLines) {
      const uint64_t text = size - 1;
      FillPseudoRandom(state, frame, text);
      // The lines codec ends a line at "\n" and drops a "\r" before it
      // (actors/codec.cc), so neither may appear in the text.
      for (uint64_t i = 0; i < text; ++i) {
        if (frame[i] == '\n' || frame[i] == '\r') frame[i] ^= 0x80;
      }
      frame[text] = '\n';
    } else {
      const uint64_t payload = size - 4;
      frame[0] = static_cast<uint8_t>(payload >> 24);
      frame[1] = static_cast<uint8_t>(payload >> 16);
      frame[2] = static_cast<uint8_t>(payload >> 8);
      frame[3] = static_cast<uint8_t>(payload);
      FillPseudoRandom(state, frame + 4, payload);
    }
  }
  // A forward loop: the period may be shorter than the slack.
  for (uint64_t i = period; i < period + kStreamChunk; ++i) {
    table[i] = table[i - period];
  }
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

Stream::Stream(uint64_t message_size, LoadFraming framing)
    : pattern_(PatternTable()), message_size_(message_size), framing_(framing) {
  if (framing == LoadFraming::kRaw) return;
  frames_ = FramesFor(message_size);
  // Streams n and n + 1 start about 0.618 of the table apart, as SeedOf's
  // do; any stride from 1 to frames - 1 visits every frame (frames is prime).
  frame_stride_ = std::max<uint64_t>(1, frames_ * kSeedStride / kPeriod);
  period_ = frames_ * message_size;
  framed_table_ = BuildFramedTable(framing, message_size, frames_);
  pattern_ = framed_table_.get();
}

uint64_t Stream::SeedFor(uint64_t n) const {
  if (framing_ == LoadFraming::kRaw) return (n % kPeriod) * kSeedStride % kPeriod;
  return (n % frames_) * frame_stride_ % frames_ * message_size_;
}

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
