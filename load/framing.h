// The message framings echo-load can speak (LoadOptions::framing), matching
// echo-cluster's --codec (actors/codec.h):
//
//   raw     the pattern bytes as they are; the server may echo them in any
//           pieces (every byte is checked, no message boundary is sent)
//   lines   each message is one line: size - 1 pattern bytes that hold
//           neither "\n" nor "\r", then "\n"
//   length  each message is one frame: a 4-byte big-endian length (size - 4),
//           then size - 4 pattern bytes
//
//   absl::StatusOr<LoadFraming> framing = ParseLoadFraming("lines");
//   if (!framing.ok()) { /* "unknown framing 'line' (known: raw, lines,
//     length)" */ }
//   const char* name = LoadFramingName(*framing);  // "lines"
//
// Thread safety: thread-safe (pure functions).
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace troupe {

enum class LoadFraming : uint8_t { kRaw, kLines, kLength };

// "raw", "lines", "length".
const char* LoadFramingName(LoadFraming framing);
absl::StatusOr<LoadFraming> ParseLoadFraming(absl::string_view name);

// The smallest message that is a frame with at least one pattern byte in
// it: raw 1, lines 2 (a byte and the "\n"), length 5 (the prefix and a
// byte). A line or frame without a byte of payload is not sent: a server
// may well answer an empty line with nothing.
size_t MinFramedMessageSize(LoadFraming framing);

// The largest framed message (lines and length): a framed stream keeps a
// table of at least two whole messages (load/pattern.h), and 16 MiB is the
// largest frame echo-cluster accepts by default (--max-frame), prefix
// included with room to spare.
inline constexpr size_t kMaxFramedMessageSize = size_t{16} << 20;

}  // namespace troupe
