// HttpRequest: the one request of a connection to the metrics/admin endpoint
// (core/ops/metrics_server.h), framed and parsed from the bytes received so
// far, and the response that closes it. Deliberately small: one request per
// connection, a head of bounded size, a body only by Content-Length (chunked
// bodies are refused: nothing here needs one, and a length known up front
// lets the body be bounded before it is read).
//
//   HttpParse parse = ParseHttpRequest(data, /*max_head=*/8192, /*max_body=*/1024);
//   switch (parse.status) {
//     case HttpParse::kIncomplete: return 0;           // wait for more bytes
//     case HttpParse::kError: conn.Send(HttpResponse(parse.code, "text/plain", parse.error));
//     case HttpParse::kComplete: ... parse.request.path, parse.request.Header("authorization")
//   }
//
// Errors: 400 (malformed request line or header, bad or conflicting
// Content-Length), 411 (Transfer-Encoding: a length is required), 413 (body
// over max_body, refused from the head alone), 431 (head over max_head).
// Every view in an HttpRequest points into the parsed bytes.
//
// Thread safety: pure functions over the caller's bytes.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace troupe {

struct HttpRequest {
  std::string_view method;   // "GET", "POST", ...
  std::string_view path;     // the target before any '?'
  std::string_view query;    // after the '?', or empty
  std::string_view headers;  // the header lines, "\r\n"-separated
  std::string_view body;     // Content-Length bytes (empty without one)
  bool has_content_length = false;

  // The value of the first header named `name` (case-insensitive), without
  // surrounding spaces and tabs; nullopt if there is none.
  std::optional<std::string_view> Header(std::string_view name) const;
};

struct HttpParse {
  enum Status { kIncomplete, kComplete, kError };
  Status status = kIncomplete;
  HttpRequest request;  // kComplete
  int code = 0;         // kError: the status to answer
  std::string error;    // kError: the body to answer, one line
};

HttpParse ParseHttpRequest(std::string_view data, size_t max_head, size_t max_body);

// The standard reason phrase of the codes this endpoint uses ("Unknown" else).
const char* HttpReason(int code);

// A complete response that closes the connection. `extra_headers` are whole
// "Name: value\r\n" lines. HEAD (`head_only`): the headers alone, with the
// length the body would have had.
std::string HttpResponse(int code, std::string_view content_type, std::string_view body,
                         bool head_only = false, std::string_view extra_headers = {});

}  // namespace troupe
