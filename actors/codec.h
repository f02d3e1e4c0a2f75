// Codec: how a connection's byte stream splits into messages, with limits.
//
//   raw     every read is one message; nothing is buffered
//   lines   messages end with "\n" (a "\r" before it is dropped); a line
//           longer than max_line bytes is a protocol error
//   length  a 4-byte big-endian length, then that many bytes; a length above
//           max_frame is a protocol error
//
//   Codec codec({.kind = CodecKind::kLines, .max_line = 1024});
//   absl::StatusOr<size_t> used = codec.Parse(bytes, [&](std::string_view line) {
//     Handle(line);
//     return true;   // false stops parsing (e.g. the connection closed)
//   });
//   if (!used.ok()) { /* "line longer than 1024 bytes": close the connection */ }
//
// Parse never buffers: bytes of an incomplete message are left unconsumed,
// and the connection keeps them (bounded by the limit) until more arrive.
// A caller that feeds the same partial line again with more bytes behind it
// passes `scanned`: Parse then searches for "\n" only past the bytes it has
// already searched, so a long line arriving in many reads costs linear, not
// quadratic, time.
//
// Thread safety: thread-compatible; Parse and Write are const.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "core/loop/connection.h"

namespace troupe {

enum class CodecKind : uint8_t { kRaw, kLines, kLength };

// "raw", "lines", "length" <-> CodecKind.
const char* CodecKindName(CodecKind kind);
absl::StatusOr<CodecKind> ParseCodecKind(std::string_view name);

struct CodecOptions {
  CodecKind kind = CodecKind::kRaw;
  size_t max_line = 64 * 1024;   // lines: longest line, without its "\n"
  size_t max_frame = 16u << 20;  // length: largest payload
};

class Codec {
 public:
  explicit Codec(const CodecOptions& options = {}) : options_(options) {}

  const CodecOptions& options() const { return options_; }

  // Hands each complete message in `data` to `on_message` (in order, while it
  // returns true). Returns the bytes consumed, or InvalidArgument (naming the
  // rule broken) when the input can never become a valid message.
  // `scanned` (optional, lines only): on entry, how many bytes at the start
  // of `data` are known to hold no "\n"; on return, the same for the
  // unconsumed rest. Keep it per connection, starting at 0.
  absl::StatusOr<size_t> Parse(std::string_view data,
                               absl::FunctionRef<bool(std::string_view)> on_message,
                               size_t* scanned = nullptr) const;

  // The most unconsumed input a valid stream can leave waiting, rounded up
  // to a whole message: lines: max_line + 1 ("\r" included); length: the
  // 4-byte header and max_frame. Raw: 0 (raw consumes everything). The
  // connection's input limit is derived from it, so a limit above 16 MiB
  // works and a maximum-size frame never trips it.
  size_t MaxPartialBytes() const;

  // Sends `payload` framed for this codec, in one write where possible.
  void Write(Connection& conn, std::string_view payload) const;

 private:
  CodecOptions options_;
};

}  // namespace troupe
