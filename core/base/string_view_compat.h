// Debian's Abseil is built with ABSL_OPTION_USE_STD_STRING_VIEW 0, so
// absl::string_view is its own type and absl::StrCat & co. do not accept a
// std::string_view. troupe's API uses std::string_view; convert at the edge.
//
//   absl::StrCat("bad address '", AsAbsl(text), "'");
//
// Thread safety: thread-safe (pure functions).
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace troupe {

inline absl::string_view AsAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}
inline std::string_view AsStd(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace troupe
