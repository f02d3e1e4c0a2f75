#include "core/ops/admin.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/base/fd.h"
#include "core/base/log.h"
#include "core/base/string_view_compat.h"
#include "core/loop/reactor.h"
#include "core/ops/top_connections.h"
#include "core/server.h"

namespace troupe {
namespace {

constexpr size_t kDefaultTop = 10;

const char* ActionName(AdminEndpoint::Action action) {
  switch (action) {
    case AdminEndpoint::Action::kConnections:
      return "connections";
    case AdminEndpoint::Action::kPause:
      return "accept_pause";
    case AdminEndpoint::Action::kResume:
      return "accept_resume";
    case AdminEndpoint::Action::kMaxConnections:
      return "max_connections";
    case AdminEndpoint::Action::kLogLevel:
      return "log_level";
    default:
      return "unknown";
  }
}

const char* ResultName(AdminEndpoint::Result result) {
  switch (result) {
    case AdminEndpoint::Result::kOk:
      return "ok";
    case AdminEndpoint::Result::kDenied:
      return "denied";
    case AdminEndpoint::Result::kInvalid:
      return "invalid";
    default:
      return "unavailable";
  }
}

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
    default:
      return "off";
  }
}

// A one-line text reply; `extra_headers` as HttpResponse's.
AdminEndpoint::Reply Text(int code, std::string_view line, std::string_view extra_headers = {}) {
  return {code, HttpResponse(code, "text/plain; charset=utf-8", absl::StrCat(AsAbsl(line), "\n"),
                             false, extra_headers)};
}

// Equal in time that depends on `want`'s length only, never on where the two
// differ, so a guesser learns nothing from timing but (at most) the length.
bool TokenMatches(std::string_view given, std::string_view want) {
  unsigned char diff = given.size() == want.size() ? 0 : 1;
  for (size_t i = 0; i < want.size(); ++i) {
    const char g = i < given.size() ? given[i] : '\0';
    diff = static_cast<unsigned char>(
        diff | (static_cast<unsigned char>(g) ^ static_cast<unsigned char>(want[i])));
  }
  return diff == 0;
}

// An answer that comes from other threads: sent once, on the HTTP loop, to
// the client if it is still there, whichever comes first of the result and
// the deadline. Touched on the HTTP loop only.
struct PendingReply {
  Reactor* loop;
  ConnectionId client;
  absl::AnyInvocable<void(int)> count;  // the endpoint's, for the result
  bool answered = false;

  void Answer(int code, std::string_view body, std::string_view content_type = "text/plain") {
    if (answered) return;
    answered = true;
    count(code);
    if (Connection* conn = loop->Find(client)) {
      conn->Send(HttpResponse(code, content_type, body));
      conn->CloseAfterFlush();
    }
  }
};

// One /admin/connections request: the reactors' parts as they come back.
struct Gather {
  PendingReply reply;
  size_t n = kDefaultTop;
  TopBy by = TopBy::kOutput;
  size_t reactors = 0;
  size_t answered = 0;
  size_t scanned = 0;
  std::vector<ConnectionRow> rows;

  void Add(TopConnections part) {
    ++answered;
    // Late (after the deadline's 503): nothing is kept.
    if (reply.answered) return;
    scanned += part.scanned;
    for (ConnectionRow& row : part.rows) rows.push_back(std::move(row));
    if (answered < reactors) return;
    MergeTop(rows, n, by);
    const std::string json = RenderTopJson(rows, by, n, reactors, scanned);
    // The deadline timer holds this Gather until it fires: the rows go now,
    // not then.
    std::vector<ConnectionRow>().swap(rows);
    reply.Answer(200, json, "application/json");
  }

  // The deadline: 503 unless answered already.
  void Expire(absl::Duration deadline) {
    if (reply.answered) return;
    std::vector<ConnectionRow>().swap(rows);
    reply.Answer(503, absl::StrCat(answered, " of ", reactors, " reactors answered within ",
                                   absl::FormatDuration(deadline), "\n"));
  }
};

// "1234" (1 to 5 digits): a port in a Host header.
bool IsPort(std::string_view s) {
  return !s.empty() && s.size() <= 5 && s.find_first_not_of("0123456789") == std::string_view::npos;
}

// A Host header that names this machine's loopback literally: 127.x.y.z,
// [::1] (or [::ffff:127.x.y.z]) or localhost, each optionally with ":port".
// Any other name may be a DNS-rebound attacker's.
bool IsLoopbackHost(std::string_view host) {
  std::string_view name = host;
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    const std::string_view after = host.substr(close + 1);
    if (!after.empty() && (after.front() != ':' || !IsPort(after.substr(1)))) return false;
    const std::string literal(host.substr(1, close - 1));
    in6_addr in6{};
    if (::inet_pton(AF_INET6, literal.c_str(), &in6) != 1) return false;
    return IN6_IS_ADDR_LOOPBACK(&in6) || (IN6_IS_ADDR_V4MAPPED(&in6) && in6.s6_addr[12] == 127);
  }
  if (const size_t colon = host.find(':'); colon != std::string_view::npos) {
    if (!IsPort(host.substr(colon + 1))) return false;
    name = host.substr(0, colon);
  }
  if (absl::EqualsIgnoreCase(AsAbsl(name), "localhost")) return true;
  // inet_pton takes the dotted quad only (no "0x7f.1", no "2130706433").
  const std::string literal(name);
  in_addr in{};
  return ::inet_pton(AF_INET, literal.c_str(), &in) == 1 && (ntohl(in.s_addr) >> 24) == 127;
}

// The content of a token file, at most 4 KiB (a token is far smaller; a
// larger file is not a token file). Errors name the file.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  constexpr size_t kMax = 4096;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return absl::InvalidArgumentError(
        absl::StrCat("admin token file ", path, ": ", std::strerror(errno)));
  }
  std::string content(kMax + 1, '\0');
  size_t got = 0;
  while (got < content.size()) {
    const ssize_t n = ::read(fd.get(), content.data() + got, content.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("admin token file ", path, ": ", std::strerror(errno)));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > kMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("admin token file ", path, ": larger than ", kMax, " bytes"));
  }
  content.resize(got);
  return content;
}

// Runs `task` on the loop behind `inbox` if that loop still exists; dropped
// (with what it holds) otherwise.
void PostBack(const std::weak_ptr<Inbox>& inbox, Reactor::Task task) {
  if (std::shared_ptr<Inbox> alive = inbox.lock()) alive->Post(std::move(task));
}

}  // namespace

absl::StatusOr<AdminAuth> ParseAdminAuth(std::string_view name) {
  if (name == "off") return AdminAuth::kOff;
  if (name == "loopback") return AdminAuth::kLoopback;
  if (name == "token") return AdminAuth::kToken;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown admin mode '", AsAbsl(name), "' (known: off, loopback, token)"));
}

bool IsLoopback(const Address& address) {
  if (address.family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address.sockaddr_ptr());
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (address.family() == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address.sockaddr_ptr());
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return true;
    return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<AdminEndpoint>> AdminEndpoint::Create(const AdminOptions& options,
                                                                     const Address& bound,
                                                                     Server* server) {
  std::string token;
  switch (options.auth) {
    case AdminAuth::kOff:
      return std::unique_ptr<AdminEndpoint>();
    case AdminAuth::kLoopback:
      if (!IsLoopback(bound)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "admin auth 'loopback' needs a loopback metrics address (127.0.0.1 or ::1), not ",
            bound.ToString(),
            ": anyone who can reach it could change the server; use "
            "'token' auth there"));
      }
      break;
    case AdminAuth::kToken: {
      if (options.token_file.empty()) {
        return absl::InvalidArgumentError("admin auth 'token' needs a token file");
      }
      absl::StatusOr<std::string> content = ReadSmallFile(options.token_file);
      if (!content.ok()) return content.status();
      token = std::string(absl::StripAsciiWhitespace(*content));
      if (token.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("admin token file ", options.token_file, " is empty"));
      }
      break;
    }
  }
  return std::unique_ptr<AdminEndpoint>(new AdminEndpoint(options, std::move(token), server));
}

AdminEndpoint::AdminEndpoint(const AdminOptions& options, std::string token, Server* server)
    : options_(options), token_(std::move(token)), server_(server) {}

void AdminEndpoint::Count(Action action, int code) {
  const Result result = code == 200                  ? Result::kOk
                        : code == 401 || code == 403 ? Result::kDenied
                        : code == 503                ? Result::kUnavailable
                                                     : Result::kInvalid;
  ++requests_[static_cast<size_t>(action)][static_cast<size_t>(result)];
}

void AdminEndpoint::RenderPrometheus(std::string& out) const {
  absl::StrAppend(&out,
                  "# HELP troupe_admin_requests_total Requests to the admin endpoints, by action "
                  "and result (ok, denied, invalid, unavailable).\n"
                  "# TYPE troupe_admin_requests_total counter\n");
  for (size_t a = 0; a < requests_.size(); ++a) {
    for (size_t r = 0; r < requests_[a].size(); ++r) {
      absl::StrAppend(&out, "troupe_admin_requests_total{action=\"",
                      ActionName(static_cast<Action>(a)), "\",result=\"",
                      ResultName(static_cast<Result>(r)), "\"} ", requests_[a][r], "\n");
    }
  }
}

std::optional<std::string> AdminEndpoint::Handle(const HttpRequest& request, Connection& conn) {
  Action action = Action::kUnknown;
  if (request.path == "/admin/connections") {
    action = Action::kConnections;
  } else if (request.path == "/admin/accept/pause") {
    action = Action::kPause;
  } else if (request.path == "/admin/accept/resume") {
    action = Action::kResume;
  } else if (request.path == "/admin/max-connections") {
    action = Action::kMaxConnections;
  } else if (request.path == "/admin/log-level") {
    action = Action::kLogLevel;
  }
  std::optional<Reply> reply = Dispatch(action, request, conn);
  if (!reply.has_value()) return std::nullopt;  // counted when it is sent
  Count(action, reply->code);
  return std::move(reply->response);
}

std::optional<AdminEndpoint::Reply> AdminEndpoint::Dispatch(Action action,
                                                            const HttpRequest& request,
                                                            Connection& conn) {
  if (action == Action::kUnknown) return Text(404, "not found");
  // Auth before anything else: an outsider learns no more than "no".
  // A browser marks what a web page sends (a cross-origin POST needs no
  // preflight, and a page can read 127.0.0.1 under a DNS-rebound name of
  // its own); curl and scripts send neither header. A typed-in URL is
  // "Sec-Fetch-Site: none".
  if (request.Header("origin").has_value()) {
    return Text(403, "admin endpoints refuse browser requests (Origin)");
  }
  if (const std::optional<std::string_view> site = request.Header("sec-fetch-site");
      site.has_value() && !absl::EqualsIgnoreCase(AsAbsl(*site), "none")) {
    return Text(403, "admin endpoints refuse browser requests (Sec-Fetch-Site)");
  }
  if (options_.auth == AdminAuth::kLoopback) {
    if (!IsLoopback(conn.peer())) return Text(403, "admin endpoints answer loopback clients only");
    if (const std::optional<std::string_view> host = request.Header("host");
        host.has_value() && !IsLoopbackHost(*host)) {
      return Text(403, "Host must be a loopback address or localhost");
    }
  }
  if (options_.auth == AdminAuth::kToken) {
    const std::optional<std::string_view> auth = request.Header("authorization");
    constexpr std::string_view kScheme = "bearer ";
    if (!auth.has_value() || auth->size() < kScheme.size() ||
        !absl::EqualsIgnoreCase(AsAbsl(auth->substr(0, kScheme.size())), AsAbsl(kScheme))) {
      return Text(401, "Authorization: Bearer <token> required",
                  "WWW-Authenticate: Bearer realm=\"troupe-admin\"\r\n");
    }
    const absl::string_view given =
        absl::StripAsciiWhitespace(AsAbsl(auth->substr(kScheme.size())));
    if (!TokenMatches(AsStd(given), token_)) return Text(403, "wrong token");
  }
  const bool get = request.method == "GET";
  const bool post = request.method == "POST";
  switch (action) {
    case Action::kConnections:
      if (!get) return Text(405, "GET only", "Allow: GET\r\n");
      return ConnectionsRequest(request, conn);
    case Action::kPause:
    case Action::kResume:
      if (!post) return Text(405, "POST only", "Allow: POST\r\n");
      break;
    default:
      if (!get && !post) {
        return Text(405, "GET or POST only", "Allow: GET, POST\r\n");
      }
      break;
  }
  // Every change carries its length: a missing one is a client that did not
  // mean to send what follows (and RFC 9110 lets a server insist).
  if (post && !request.has_content_length) {
    return Text(411, "Content-Length required (curl: -d '' or -d VALUE)");
  }
  switch (action) {
    case Action::kPause:
    case Action::kResume:
      PauseRequest(action == Action::kPause, conn);
      return std::nullopt;
    case Action::kMaxConnections:
      return MaxConnectionsRequest(request, conn);
    default:
      return LogLevelRequest(request, conn);
  }
}

std::optional<AdminEndpoint::Reply> AdminEndpoint::ConnectionsRequest(const HttpRequest& request,
                                                                      Connection& conn) {
  size_t n = kDefaultTop;
  TopBy by = TopBy::kOutput;
  for (absl::string_view param : absl::StrSplit(AsAbsl(request.query), '&', absl::SkipEmpty())) {
    const size_t eq = param.find('=');
    const absl::string_view key = param.substr(0, eq);
    const absl::string_view value = eq == absl::string_view::npos ? "" : param.substr(eq + 1);
    if (key == "top") {
      if (!absl::SimpleAtoi(value, &n) || n < 1 || n > kMaxTopConnections) {
        return Text(400, absl::StrCat("top must be 1..", kMaxTopConnections));
      }
    } else if (key == "by") {
      absl::StatusOr<TopBy> parsed = ParseTopBy(AsStd(value));
      if (!parsed.ok()) return Text(400, AsStd(parsed.status().message()));
      by = *parsed;
    } else {
      return Text(400, absl::StrCat("unknown parameter '", key, "' (known: top, by)"));
    }
  }
  // One walk of every table at a time: a second request meanwhile would only
  // double the reactors' work and the rows held.
  if (gather_in_flight_) {
    return Text(503, "another /admin/connections request is being answered; retry",
                "Retry-After: 1\r\n");
  }
  gather_in_flight_ = true;
  Reactor& loop = conn.reactor();
  auto gather = std::make_shared<Gather>();
  gather->reply = PendingReply{&loop, conn.id(), [this](int code) {
                                 gather_in_flight_ = false;
                                 Count(Action::kConnections, code);
                               }};
  gather->n = n;
  gather->by = by;
  gather->reactors = static_cast<size_t>(server_->workers());
  const std::weak_ptr<Inbox> back = loop.inbox();
  // Each reactor walks its own table on its own thread; nothing is locked.
  for (int i = 0; i < server_->workers(); ++i) {
    Reactor* reactor = &server_->reactor(i);
    reactor->Post([reactor, gather, back, n, by]() mutable {
      TopConnections part = TopConnectionsInLoop(*reactor, n, by);
      PostBack(back, [gather = std::move(gather), part = std::move(part)]() mutable {
        gather->Add(std::move(part));
      });
    });
  }
  // The timer keeps the Gather (it must answer even if a reactor drops its
  // task unrun), but an answered Gather holds no rows: until the deadline
  // it is a few words.
  loop.RunAfter(options_.reply_deadline,
                [gather, deadline = options_.reply_deadline] { gather->Expire(deadline); });
  return std::nullopt;
}

void AdminEndpoint::PauseRequest(bool paused, Connection& conn) {
  const bool was = server_->accept_paused();
  TROUPE_LOG(kInfo, "admin: accept %s -> %s from %s", was ? "paused" : "accepting",
             paused ? "paused" : "accepting", conn.peer().ToString());
  Reactor& loop = conn.reactor();
  const Action action = paused ? Action::kPause : Action::kResume;
  auto reply = std::make_shared<PendingReply>(
      PendingReply{&loop, conn.id(), [this, action](int code) { Count(action, code); }});
  // 200 only once every listener has applied it: a client told "paused"
  // can rely on it.
  auto done = [reply, back = loop.inbox(), paused]() mutable {
    PostBack(back, [reply = std::move(reply), paused] {
      reply->Answer(
          200, paused ? "paused: new connections wait in the listen backlog\n" : "accepting\n");
    });
  };
  if (paused) {
    server_->PauseAccepting(std::move(done));
  } else {
    server_->ResumeAccepting(std::move(done));
  }
  loop.RunAfter(options_.reply_deadline, [reply] {
    reply->Answer(503, "the listeners did not confirm in time (is the server stopping?)\n");
  });
}

AdminEndpoint::Reply AdminEndpoint::MaxConnectionsRequest(const HttpRequest& request,
                                                          const Connection& conn) {
  const size_t old = server_->max_connections();
  if (request.method == "GET") return Text(200, absl::StrCat(old));
  const absl::string_view body = absl::StripAsciiWhitespace(AsAbsl(request.body));
  uint64_t n = 0;
  if (body.empty() || body.find_first_not_of("0123456789") != absl::string_view::npos ||
      !absl::SimpleAtoi(body, &n)) {
    return Text(400, "body must be a number of connections (0: no limit)");
  }
  server_->SetMaxConnections(static_cast<size_t>(n));
  TROUPE_LOG(kInfo, "admin: max-connections %d -> %d from %s", old, n, conn.peer().ToString());
  return Text(200, absl::StrCat("max-connections ", old, " -> ", n));
}

AdminEndpoint::Reply AdminEndpoint::LogLevelRequest(const HttpRequest& request,
                                                    const Connection& conn) {
  const LogLevel old = GetLogLevel();
  if (request.method == "GET") return Text(200, LogLevelName(old));
  absl::StatusOr<LogLevel> level =
      ParseLogLevel(AsStd(absl::StripAsciiWhitespace(AsAbsl(request.body))));
  if (!level.ok()) return Text(400, AsStd(level.status().message()));
  // The line goes out under the more verbose of the two levels, so that
  // turning logging down is logged too (unless it was off already).
  const bool quieter = *level > old;
  auto log = [&] {
    TROUPE_LOG(kInfo, "admin: log-level %s -> %s from %s", LogLevelName(old), LogLevelName(*level),
               conn.peer().ToString());
  };
  if (quieter) log();
  SetLogLevel(*level);
  if (!quieter) log();
  return Text(200, absl::StrCat("log-level ", LogLevelName(old), " -> ", LogLevelName(*level)));
}

}  // namespace troupe
