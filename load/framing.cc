#include "load/framing.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace troupe {

const char* LoadFramingName(LoadFraming framing) {
  switch (framing) {
    case LoadFraming::kRaw:
      return "raw";
    case LoadFraming::kLines:
      return "lines";
    case LoadFraming::kLength:
      return "length";
  }
  return "?";
}

absl::StatusOr<LoadFraming> ParseLoadFraming(absl::string_view name) {
  if (name == "raw") return LoadFraming::kRaw;
  if (name == "lines") return LoadFraming::kLines;
  if (name == "length") return LoadFraming::kLength;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown framing '", name, "' (known: raw, lines, length)"));
}

size_t MinFramedMessageSize(LoadFraming framing) {
  switch (framing) {
    case LoadFraming::kRaw:
      return 1;
    case LoadFraming::kLines:
      return 2;
    case LoadFraming::kLength:
      return 5;
  }
  return 1;
}

}  // namespace troupe
