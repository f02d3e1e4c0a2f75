// The byte stream each connection sends, and the check of what comes back.
// Connection i sends a deterministic pseudo-random stream that starts at its
// own position (SeedOf(i)) in a shared table with a prime period, so a server
// that mixes up two connections' bytes, drops, duplicates or reorders them is
// caught at the first wrong byte. In script mode the stream is the messages
// back to back. Stream says where each message ends; CheckEcho compares
// echoed bytes with what was sent.
//
//   const Stream stream(/*message_size=*/64);
//   const uint8_t* expected = stream.At(stream.SeedFor(i), received);
//   if (std::optional<std::string> error =
//           CheckEcho(i, expected, received, sent, data, n)) { /* close */ }
//
// Framed (LoadFraming lines or length, load/framing.h), every message is one
// frame, so a stream has its own table of whole frames instead of the shared
// one, and streams start at frame boundaries:
//
//   table:  |frame 0|frame 1| ... |frame F-1|copy of the first kStreamChunk|
//           ^ period = F x message size    ^ wrap-around, so At() stays
//                                            contiguous for kStreamChunk
//   lines:  [size - 1 pattern bytes, no "\n" or "\r"]["\n"]
//   length: [size - 4, 4 bytes big-endian][size - 4 pattern bytes]
//
// Each frame's pattern bytes differ (one generator runs through the table),
// so the echo check stays byte-exact over the whole stream: a frame dropped,
// duplicated, reordered or taken from another connection is caught at its
// first wrong byte, as in raw mode.
//
// Thread safety: thread-safe. The pattern table is built once and then only
// read; a Stream and a Script are read-only once constructed, and shared by
// every worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "load/framing.h"

namespace troupe::load {

// How many bytes from any Stream::At() are contiguous at least (in script
// mode, up to the end of the script): so one recv() or send() of up to this
// many bytes is compared or sent as one range.
inline constexpr size_t kStreamChunk = 64 * 1024;

// Script mode's stream: every message back to back, and where each ends.
struct Script {
  explicit Script(const std::vector<std::string>& messages);

  std::string bytes;
  std::vector<uint64_t> ends;  // ends[k]: stream offset just past message k.
};

// Where the stream of connection `index` starts in the shared pattern:
// distinct for the first 65,521 connections, and far apart for neighbours.
// Stream::SeedFor is the same for a raw stream.
uint64_t SeedOf(int index);

// One connection's stream: its bytes and its message boundaries. Stream
// offsets count bytes since the connection opened; message k occupies stream
// bytes [EndOf(k), EndOf(k + 1)): with fixed-size messages
// [k * size, (k + 1) * size).
class Stream {
 public:
  // Fixed-size messages of the pattern, without end; with `framing` lines or
  // length each one frame (see above). `message_size` must be valid for the
  // framing (ValidateLoadOptions): MinFramedMessageSize() at least and, when
  // framed, kMaxFramedMessageSize at most.
  explicit Stream(uint64_t message_size, LoadFraming framing = LoadFraming::kRaw);
  // The script's messages, each once; `script` must outlive the Stream.
  explicit Stream(const Script& script);

  bool script_mode() const { return script_ != nullptr; }
  LoadFraming framing() const { return framing_; }
  // Bytes after which the stream repeats (script mode: unused).
  uint64_t period() const { return period_; }

  // Where stream `n` starts: connection n's (churn mode: a cycle's). Raw:
  // SeedOf(n). Framed: a frame boundary, distinct for as many consecutive
  // streams as the table has frames (65,521 for small messages, fewer for
  // larger ones: the table holds 1 MiB of frames at least, two at least).
  uint64_t SeedFor(uint64_t n) const;
  // Script mode: the messages per connection; 0 otherwise.
  uint64_t message_count() const { return script_count_; }

  // The stream of the connection with `seed` from `offset` on; contiguous
  // for kStreamChunk bytes (pattern) or to the end of the script.
  const uint8_t* At(uint64_t seed, uint64_t offset) const {
    if (script_ != nullptr) return script_ + offset;
    // Raw keeps its modulo by a constant (a multiplication); framed divides
    // by its own period. Once per send() or recv() either way, not per byte.
    if (framing_ == LoadFraming::kRaw) return pattern_ + (seed + offset) % kPeriod;
    return pattern_ + (seed + offset) % period_;
  }
  // Stream offset just past the first `messages` messages.
  uint64_t EndOf(uint64_t messages) const {
    if (script_ == nullptr) return messages * message_size_;
    return messages == 0 ? 0 : script_ends_[messages - 1];
  }
  // Messages fully echoed once `received` bytes are back, of which
  // `completed` were already known to be.
  uint64_t CompletedBy(uint64_t received, uint64_t completed) const {
    if (script_ == nullptr) return received / message_size_;
    while (completed < script_count_ && script_ends_[completed] <= received) {
      ++completed;
    }
    return completed;
  }

  // The pattern's period: the largest prime below 2^16. Prime, so that no
  // power-of-two message or buffer size lines up with it (a server repeating
  // a 4 KiB block is caught); small, so that the table stays in L2 cache.
  static constexpr uint64_t kPeriod = 65521;

 private:
  // Framed: this stream's own table, which pattern_ points into.
  std::unique_ptr<uint8_t[]> framed_table_;
  const uint8_t* pattern_;  // Shared (raw) or framed_table_; read-only.
  const uint64_t message_size_ = 0;
  const LoadFraming framing_ = LoadFraming::kRaw;
  uint64_t period_ = kPeriod;
  uint64_t frames_ = 0;                    // Framed: frames in the table (a prime).
  uint64_t frame_stride_ = 0;              // Framed: frames between streams n and n + 1.
  const uint8_t* const script_ = nullptr;  // Null unless script mode.
  const uint64_t* const script_ends_ = nullptr;
  const uint64_t script_count_ = 0;
};

// Checks `n` echoed bytes at `data` against `expected`, the stream from
// offset `received` on, of which `sent` bytes in all were sent. Returns the
// error for connection `connection` (the first wrong byte, or bytes beyond
// what was sent), or nullopt when every byte is right.
std::optional<std::string> CheckEcho(int connection, const uint8_t* expected, uint64_t received,
                                     uint64_t sent, const uint8_t* data, size_t n);

}  // namespace troupe::load
