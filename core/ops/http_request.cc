#include "core/ops/http_request.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "core/base/string_view_compat.h"

namespace troupe {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

HttpParse Error(int code, std::string message) {
  HttpParse parse;
  parse.status = HttpParse::kError;
  parse.code = code;
  parse.error = std::move(message);
  return parse;
}

// Calls `f(name, value)` for each header line; false at a malformed one.
template <typename F>
bool ForEachHeader(std::string_view headers, F&& f) {
  while (!headers.empty()) {
    const size_t end = headers.find("\r\n");
    const std::string_view line = headers.substr(0, end);
    headers = end == std::string_view::npos ? std::string_view() : headers.substr(end + 2);
    const size_t colon = line.find(':');
    // No name, a name with spaces, or a folded continuation line (obsolete,
    // and a classic smuggling vector): refused rather than guessed at.
    if (colon == std::string_view::npos || colon == 0 ||
        line.substr(0, colon).find_first_of(" \t") != std::string_view::npos) {
      return false;
    }
    if (!f(line.substr(0, colon), Trim(line.substr(colon + 1)))) return false;
  }
  return true;
}

}  // namespace

std::optional<std::string_view> HttpRequest::Header(std::string_view name) const {
  std::optional<std::string_view> found;
  ForEachHeader(headers, [&](std::string_view key, std::string_view value) {
    if (!absl::EqualsIgnoreCase(AsAbsl(key), AsAbsl(name))) return true;
    found = value;
    return false;  // the first one
  });
  return found;
}

HttpParse ParseHttpRequest(std::string_view data, size_t max_head, size_t max_body) {
  const size_t head_end = data.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    if (data.size() > max_head) return Error(431, "request head too large");
    return HttpParse{};  // kIncomplete
  }
  if (head_end > max_head) return Error(431, "request head too large");
  const std::string_view head = data.substr(0, head_end);
  const size_t line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || sp1 == 0 ||
      sp2 == sp1 + 1 || line.substr(sp2 + 1, 7) != "HTTP/1." ||
      line.find(' ', sp2 + 1) != std::string_view::npos) {
    return Error(400, "bad request");
  }
  HttpParse parse;
  HttpRequest& request = parse.request;
  request.method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const size_t question = target.find('?');
  request.path = target.substr(0, question);
  if (question != std::string_view::npos) request.query = target.substr(question + 1);
  request.headers =
      line_end == std::string_view::npos ? std::string_view() : head.substr(line_end + 2);

  std::optional<uint64_t> length;
  bool chunked = false;
  bool bad_length = false;
  const bool well_formed =
      ForEachHeader(request.headers, [&](std::string_view name, std::string_view value) {
        if (absl::EqualsIgnoreCase(AsAbsl(name), "transfer-encoding")) chunked = true;
        if (!absl::EqualsIgnoreCase(AsAbsl(name), "content-length")) return true;
        uint64_t n = 0;
        // Digits only (SimpleAtoi would take "+5" or " 5"); two different
        // lengths make the framing ambiguous.
        if (value.empty() || value.find_first_not_of("0123456789") != std::string_view::npos ||
            !absl::SimpleAtoi(AsAbsl(value), &n) || (length.has_value() && *length != n)) {
          bad_length = true;
          return false;
        }
        length = n;
        return true;
      });
  if (!well_formed) return Error(400, bad_length ? "bad Content-Length" : "bad header line");
  if (chunked) return Error(411, "Content-Length required (Transfer-Encoding is not accepted)");
  if (length.has_value()) {
    if (*length > max_body) return Error(413, absl::StrFormat("body over %d bytes", max_body));
    request.has_content_length = true;
    const size_t body_at = head_end + 4;
    if (data.size() - body_at < *length) return HttpParse{};  // the body is still coming
    request.body = data.substr(body_at, static_cast<size_t>(*length));
  }
  parse.status = HttpParse::kComplete;
  return parse;
}

const char* HttpReason(int code) {
  switch (code) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

std::string HttpResponse(int code, std::string_view content_type, std::string_view body,
                         bool head_only, std::string_view extra_headers) {
  std::string r = absl::StrFormat(
      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n",
      code, HttpReason(code), AsAbsl(content_type), body.size(), AsAbsl(extra_headers));
  if (!head_only) r.append(body);
  return r;
}

}  // namespace troupe
