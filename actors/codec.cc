#include "actors/codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/base/string_view_compat.h"

namespace troupe {

const char* CodecKindName(CodecKind kind) {
  switch (kind) {
    case CodecKind::kRaw:
      return "raw";
    case CodecKind::kLines:
      return "lines";
    case CodecKind::kLength:
      return "length";
  }
  return "?";
}

absl::StatusOr<CodecKind> ParseCodecKind(std::string_view name) {
  if (name == "raw") return CodecKind::kRaw;
  if (name == "lines") return CodecKind::kLines;
  if (name == "length") return CodecKind::kLength;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown codec '", AsAbsl(name), "' (known: raw, lines, length)"));
}

size_t Codec::MaxPartialBytes() const {
  switch (options_.kind) {
    case CodecKind::kRaw:
      return 0;
    case CodecKind::kLines:
      return options_.max_line + 1;
    case CodecKind::kLength:
      return 4 + options_.max_frame;
  }
  return 0;
}

absl::StatusOr<size_t> Codec::Parse(std::string_view data,
                                    absl::FunctionRef<bool(std::string_view)> on_message,
                                    size_t* scanned) const {
  switch (options_.kind) {
    case CodecKind::kRaw:
      if (!data.empty()) on_message(data);
      return data.size();

    case CodecKind::kLines: {
      size_t used = 0;
      // Bytes at the start of the current line already searched (only the
      // first line of `data` can have been seen before).
      size_t skip = scanned != nullptr ? *scanned : 0;
      if (scanned != nullptr) *scanned = 0;
      while (used < data.size()) {
        const char* start = data.data() + used;
        const size_t left = data.size() - used;
        // Look no further than the limit allows: a line without its "\n"
        // within max_line + 1 bytes ("\r" included) is already too long.
        const size_t window = left < options_.max_line + 2 ? left : options_.max_line + 2;
        const size_t from = skip < window ? skip : window;
        skip = 0;
        const void* nl = std::memchr(start + from, '\n', window - from);
        if (nl == nullptr) {
          if (left > options_.max_line + 1) {
            return absl::InvalidArgumentError(
                absl::StrCat("line longer than ", options_.max_line, " bytes"));
          }
          if (scanned != nullptr) *scanned = left;  // all of the partial line
          break;                                    // incomplete line: wait for more
        }
        size_t length = static_cast<size_t>(static_cast<const char*>(nl) - start);
        used += length + 1;
        if (length > 0 && start[length - 1] == '\r') --length;
        if (length > options_.max_line) {
          return absl::InvalidArgumentError(
              absl::StrCat("line longer than ", options_.max_line, " bytes"));
        }
        if (!on_message(std::string_view(start, length))) break;
      }
      return used;
    }

    case CodecKind::kLength: {
      size_t used = 0;
      while (data.size() - used >= 4) {
        const auto* p = reinterpret_cast<const unsigned char*>(data.data() + used);
        const uint32_t length = static_cast<uint32_t>(p[0]) << 24 |
                                static_cast<uint32_t>(p[1]) << 16 |
                                static_cast<uint32_t>(p[2]) << 8 | p[3];
        if (length > options_.max_frame) {
          return absl::InvalidArgumentError(absl::StrCat(
              "frame of ", length, " bytes exceeds the limit of ", options_.max_frame));
        }
        if (data.size() - used - 4 < length) break;  // incomplete frame
        const std::string_view payload(data.data() + used + 4, length);
        used += 4 + static_cast<size_t>(length);
        if (!on_message(payload)) break;
      }
      return used;
    }
  }
  return 0;
}

void Codec::Write(Connection& conn, std::string_view payload) const {
  switch (options_.kind) {
    case CodecKind::kRaw:
      conn.Send(payload);
      return;
    case CodecKind::kLines:
      conn.Send({payload, std::string_view("\n", 1)});
      return;
    case CodecKind::kLength: {
      const uint32_t n = static_cast<uint32_t>(payload.size());
      const char header[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                              static_cast<char>(n >> 8), static_cast<char>(n)};
      conn.Send({std::string_view(header, 4), payload});
      return;
    }
  }
}

}  // namespace troupe
