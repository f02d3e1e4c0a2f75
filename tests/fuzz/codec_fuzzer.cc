// Fuzz target for Codec::Parse (actors/codec.h), lines and length kinds.
//
// Input layout (the header picks the configuration, the rest is the stream):
//
//   byte 0   kind: even = lines, odd = length
//   byte 1   the limit: max_line = b1 % 64, or max_frame = b1
//   byte 2   stop after this many messages (0 = never), as a closing
//            connection's callback would
//   byte 3   where to split the stream for the incremental check, as a
//            fraction (b3 / 255) of its length
//   4..      the byte stream
//
// Checked against a plain reference parser written from the rules in
// codec.h (not from codec.cc): the same status, the same bytes consumed and
// the same messages. Then the contract's invariants (consumed <= size,
// messages within the limits, lines hold no '\n', re-parsing the consumed
// prefix gives the same messages, what is left is an incomplete message) and
// that feeding the stream in two pieces, the way a connection does (keep the
// unconsumed tail, append the rest, parse again), gives the same messages,
// also when the second parse resumes its search from the first's `scanned`.
//
// Built two ways (tests/fuzz/CMakeLists.txt): with clang's libFuzzer for
// `make fuzz`, and with the standalone driver that replays the corpus in
// `make test`.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/codec.h"
#include "core/base/check.h"

namespace troupe {
namespace {

struct Result {
  bool ok = true;
  size_t used = 0;
  std::vector<std::string> messages;
  bool operator==(const Result&) const = default;
};

Result RunCodec(const Codec& codec, std::string_view data, size_t stop_after,
                size_t* scanned = nullptr) {
  Result r;
  absl::StatusOr<size_t> used = codec.Parse(
      data,
      [&](std::string_view m) {
        r.messages.emplace_back(m);
        return stop_after == 0 || r.messages.size() < stop_after;
      },
      scanned);
  r.ok = used.ok();
  if (r.ok) {
    r.used = *used;
  } else {
    TROUPE_CHECK(absl::IsInvalidArgument(used.status()), "a codec error must be InvalidArgument");
  }
  return r;
}

// The rules of codec.h, written the obvious way (unbounded search).
Result Reference(const CodecOptions& o, std::string_view data, size_t stop_after) {
  Result r;
  auto emit = [&](std::string_view m) {
    r.messages.emplace_back(m);
    return stop_after == 0 || r.messages.size() < stop_after;
  };
  size_t used = 0;
  if (o.kind == CodecKind::kLines) {
    while (used < data.size()) {
      const size_t nl = data.find('\n', used);
      if (nl == std::string_view::npos) {
        // No "\n" yet: fine while it can still become a line within the limit
        // (max_line bytes, plus a "\r" that will be dropped).
        if (data.size() - used > o.max_line + 1) r.ok = false;
        break;
      }
      std::string_view line = data.substr(used, nl - used);
      used = nl + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.size() > o.max_line) {
        r.ok = false;
        break;
      }
      if (!emit(line)) break;
    }
  } else {
    while (data.size() - used >= 4) {
      const auto* p = reinterpret_cast<const unsigned char*>(data.data() + used);
      const size_t length = size_t{p[0]} << 24 | size_t{p[1]} << 16 | size_t{p[2]} << 8 | p[3];
      if (length > o.max_frame) {
        r.ok = false;
        break;
      }
      if (data.size() - used - 4 < length) break;
      const std::string_view payload = data.substr(used + 4, length);
      used += 4 + length;
      if (!emit(payload)) break;
    }
  }
  if (r.ok) {
    r.used = used;
  } else {
    r.used = 0;
  }
  return r;
}

void CheckInvariants(const CodecOptions& o, const Codec& codec, std::string_view data,
                     size_t stop_after, const Result& r) {
  if (!r.ok) return;
  TROUPE_CHECK(r.used <= data.size(), "consumed more than was given");
  for (const std::string& m : r.messages) {
    if (o.kind == CodecKind::kLines) {
      TROUPE_CHECK(m.size() <= o.max_line, "a line above max_line was delivered");
      TROUPE_CHECK(m.find('\n') == std::string::npos, "a line holds a '\\n'");
    } else {
      TROUPE_CHECK(m.size() <= o.max_frame, "a frame above max_frame was delivered");
    }
  }
  // The consumed prefix holds exactly the delivered messages.
  const std::string_view prefix = data.substr(0, r.used);
  Result again = RunCodec(codec, prefix, 0);
  TROUPE_CHECK(again.ok, "re-parsing the consumed prefix failed");
  TROUPE_CHECK(again.used == r.used, "re-parsing the consumed prefix consumed less");
  TROUPE_CHECK(again.messages == r.messages, "re-parsing the prefix changed the messages");
  if (o.kind == CodecKind::kLines && !prefix.empty()) {
    TROUPE_CHECK(prefix.back() == '\n', "a consumed prefix ends mid-line");
  }

  // Unless the callback stopped it, what is left is an incomplete message.
  const bool stopped = stop_after != 0 && r.messages.size() == stop_after;
  if (stopped) return;
  const std::string_view rest = data.substr(r.used);
  if (o.kind == CodecKind::kLines) {
    TROUPE_CHECK(rest.find('\n') == std::string_view::npos, "a complete line was left");
    TROUPE_CHECK(rest.size() <= o.max_line + 1, "an overlong partial line was kept");
  } else if (rest.size() >= 4) {
    const auto* p = reinterpret_cast<const unsigned char*>(rest.data());
    const size_t length = size_t{p[0]} << 24 | size_t{p[1]} << 16 | size_t{p[2]} << 8 | p[3];
    TROUPE_CHECK(length <= o.max_frame, "an oversized header was kept");
    TROUPE_CHECK(rest.size() - 4 < length, "a complete frame was left");
  }
}

// The stream in two reads, as a connection sees it: parse the first, keep the
// unconsumed tail, append the second, parse again. With `resume`, the second
// parse starts its search where the first left off (the `scanned` offset the
// actor host keeps), which must not change anything either.
void CheckIncremental(const Codec& codec, std::string_view data, size_t split, const Result& whole,
                      bool resume) {
  size_t scanned = 0;
  size_t* carry = resume ? &scanned : nullptr;
  Result first = RunCodec(codec, data.substr(0, split), 0, carry);
  if (resume && first.ok) {
    TROUPE_CHECK(scanned <= split - first.used, "scanned past the unconsumed tail");
  }
  Result pieces;
  if (!first.ok) {
    pieces.ok = false;
    pieces.messages = std::move(first.messages);
  } else {
    std::string held(data.substr(first.used, split - first.used));
    held.append(data.substr(split));
    Result second = RunCodec(codec, held, 0, carry);
    pieces.ok = second.ok;
    pieces.used = second.ok ? first.used + second.used : 0;
    pieces.messages = std::move(first.messages);
    pieces.messages.insert(pieces.messages.end(), second.messages.begin(), second.messages.end());
  }
  if (whole.ok && pieces.ok) {
    TROUPE_CHECK(pieces == whole, "two reads parsed differently from one");
  } else {
    // The bytes that break a rule are the same however the stream is split:
    // the same error, after the same messages.
    TROUPE_CHECK(whole.ok == pieces.ok, "an error depends on how the stream was split");
    TROUPE_CHECK(pieces.messages == whole.messages, "messages before an error depend on the split");
  }
}

}  // namespace
}  // namespace troupe

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  using namespace troupe;
  if (size < 4) return 0;
  CodecOptions o;
  o.kind = (bytes[0] & 1) == 0 ? CodecKind::kLines : CodecKind::kLength;
  o.max_line = bytes[1] % 64;
  o.max_frame = bytes[1];
  const size_t stop_after = bytes[2];
  const std::string_view data(reinterpret_cast<const char*>(bytes) + 4, size - 4);
  const size_t split = data.size() * bytes[3] / 255;
  const Codec codec(o);

  const Result got = RunCodec(codec, data, stop_after);
  const Result want = Reference(o, data, stop_after);
  TROUPE_CHECK(got.ok == want.ok, "Parse's verdict differs from the rules");
  TROUPE_CHECK(got.used == want.used, "Parse consumed a different number of bytes");
  TROUPE_CHECK(got.messages == want.messages, "Parse delivered different messages");
  CheckInvariants(o, codec, data, stop_after, got);
  if (stop_after == 0) {
    CheckIncremental(codec, data, split, got, /*resume=*/false);
    CheckIncremental(codec, data, split, got, /*resume=*/true);
  }
  return 0;
}
