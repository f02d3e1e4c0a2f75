// Fuzz target for ParseProxyHeader (core/net/proxy_protocol.h): the input is
// the bytes a connection received first.
//
// Beyond not crashing, every input checks the properties a connection relies
// on (core/loop/proxy_header.h parses again from the start as bytes arrive):
//   - done: 0 < size <= the input and <= the version's longest header; both
//     addresses or neither, of one family; the same answer for the header's
//     bytes alone (nothing after it matters);
//   - invalid: a reason is given;
//   - monotone, which makes feeding the bytes in two pieces give the answer
//     of feeding them at once: a prefix that is done is done alike for the
//     whole input, a prefix that is invalid makes the whole invalid, and a
//     prefix shorter than a complete header needs more;
//   - a v1 header rendered back from the addresses it gave parses to them.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "core/base/check.h"
#include "core/net/proxy_protocol.h"

namespace {

using troupe::ParseProxyHeader;
using troupe::ProxyHeaderResult;

std::string Describe(const ProxyHeaderResult& r) {
  if (r.need_more()) return "need-more";
  if (r.invalid()) return "invalid";
  return absl::StrCat("done v", r.version, " size ", r.size, " ",
                      r.source ? r.source->ToString() : "local", " ",
                      r.destination ? r.destination->ToString() : "local");
}

void CheckOne(std::string_view data, const ProxyHeaderResult& r) {
  if (r.invalid()) TROUPE_CHECK(r.error != nullptr, "invalid without a reason");
  if (!r.done()) return;
  TROUPE_CHECK(r.size > 0 && r.size <= data.size(), "done with a size outside the input");
  TROUPE_CHECK(r.version == 1 || r.version == 2, "done with no version");
  TROUPE_CHECK(r.size <= (r.version == 1 ? troupe::kProxyV1MaxBytes : troupe::kProxyV2MaxBytes),
               "a header longer than its version allows");
  TROUPE_CHECK(r.source.has_value() == r.destination.has_value(), "one address without the other");
  if (r.source) {
    TROUPE_CHECK(r.source->family() == r.destination->family(), "addresses of two families");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const std::string_view data(reinterpret_cast<const char*>(bytes), size);
  const ProxyHeaderResult whole = ParseProxyHeader(data);
  CheckOne(data, whole);
  const std::string expected = Describe(whole);

  if (whole.done()) {
    const ProxyHeaderResult alone = ParseProxyHeader(data.substr(0, whole.size));
    TROUPE_CHECK(Describe(alone) == expected, "the bytes after the header changed the answer");
  }

  // Every split for a short input; for a long one the first 128, the ones
  // around the header's end and a spread of others (quadratic otherwise).
  auto check_split = [&](size_t k) {
    const std::string_view first = data.substr(0, k);
    const ProxyHeaderResult prefix = ParseProxyHeader(first);
    CheckOne(first, prefix);
    if (prefix.done()) {
      TROUPE_CHECK(Describe(prefix) == expected, "a done prefix disagrees with the whole input");
    } else if (prefix.invalid()) {
      TROUPE_CHECK(whole.invalid(), "an invalid prefix of a valid input");
    }
    if (whole.done() && k < whole.size) {
      TROUPE_CHECK(prefix.need_more(), "a prefix of a complete header did not ask for more");
    }
  };
  const size_t dense = std::min<size_t>(size, 128);
  for (size_t k = 0; k < dense; ++k) check_split(k);
  if (size > dense) {
    const size_t step = std::max<size_t>(1, (size - dense) / 32);
    for (size_t k = dense; k < size; k += step) check_split(k);
    if (whole.done()) {
      check_split(whole.size - 1);
      check_split(whole.size);
    }
  }

  // A v1 line rendered back from the addresses parses to the same addresses.
  if (whole.done() && whole.source) {
    const bool v6 = whole.source->family() == AF_INET6;
    const std::string line =
        absl::StrCat("PROXY ", v6 ? "TCP6 " : "TCP4 ", whole.source->HostString(), " ",
                     whole.destination->HostString(), " ", whole.source->port(), " ",
                     whole.destination->port(), "\r\n");
    const ProxyHeaderResult again = ParseProxyHeader(line);
    TROUPE_CHECK(again.done() && again.source && again.destination, "a rendered header failed");
    TROUPE_CHECK(again.source->ToString() == whole.source->ToString() &&
                     again.destination->ToString() == whole.destination->ToString(),
                 "a rendered header gave other addresses");
  }
  return 0;
}
