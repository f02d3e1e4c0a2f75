// The runtime controls on the metrics port (core/ops/admin.h), driven over
// real loopback HTTP against a running server.
#include "core/ops/admin.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/base/log.h"
#include "core/net/socket.h"
#include "core/ops/http_request.h"
#include "core/ops/metrics_server.h"
#include "gtest/gtest.h"
#include "tests/support/echo_handler.h"
#include "tests/support/line_client.h"
#include "tests/support/sync.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using ::troupe::testing::LineClient;
using ::troupe::testing::WaitFor;

struct Fixture {
  std::unique_ptr<Server> server;
  std::unique_ptr<MetricsServer> metrics;
};

Fixture Start(int workers, AdminOptions admin, AcceptMode mode = AcceptMode::kAcceptorThread,
              size_t max_connections = 0) {
  Fixture f;
  ServerOptions options;
  options.address = *Address::Parse("127.0.0.1:0");
  options.workers = workers;
  options.accept_mode = mode;
  options.max_connections = max_connections;
  f.server = std::move(Server::Create(options, testing::EchoHandlerFactory()).value());
  MetricsServerOptions metrics_options;
  metrics_options.admin = std::move(admin);
  absl::StatusOr<std::unique_ptr<MetricsServer>> metrics = MetricsServer::Create(
      *Address::Parse("127.0.0.1:0"), f.server.get(), std::move(metrics_options));
  EXPECT_TRUE(metrics.ok()) << metrics.status();
  f.metrics = std::move(*metrics);
  f.server->Start();
  f.metrics->Start();
  return f;
}

AdminOptions Loopback() {
  AdminOptions admin;
  admin.auth = AdminAuth::kLoopback;
  return admin;
}

// Sends `request` raw; everything answered until EOF, lines joined by "\n".
std::string Http(const MetricsServer& metrics, const std::string& request) {
  return testing::RequestUntilEof(metrics.address(), request);
}

// What curl sends: "Host: 127.0.0.1:PORT", no Origin, no Sec-Fetch-*.
std::string HostLine(const MetricsServer& metrics) {
  return absl::StrCat("Host: ", metrics.address().ToString(), "\r\n");
}

std::string Post(const MetricsServer& metrics, const std::string& path, const std::string& body,
                 const std::string& headers = "") {
  return Http(metrics, absl::StrCat("POST ", path, " HTTP/1.1\r\n", HostLine(metrics), headers,
                                    "Content-Length: ", body.size(), "\r\n\r\n", body));
}

std::string Get(const MetricsServer& metrics, const std::string& path,
                const std::string& headers = "") {
  return Http(metrics,
              absl::StrCat("GET ", path, " HTTP/1.1\r\n", HostLine(metrics), headers, "\r\n"));
}

// Restores the process-wide log level when the test ends, however it ends.
class LogLevelGuard {
 public:
  LogLevelGuard() : saved_(GetLogLevel()) {}
  ~LogLevelGuard() { SetLogLevel(saved_); }
  LogLevelGuard(const LogLevelGuard&) = delete;
  LogLevelGuard& operator=(const LogLevelGuard&) = delete;

 private:
  const LogLevel saved_;
};

// The status code of a response ("HTTP/1.1 200 OK..." -> 200), 0 if none.
int Code(const std::string& response) {
  int code = 0;
  if (response.size() < 12 || !absl::SimpleAtoi(response.substr(9, 3), &code)) return 0;
  return code;
}

// The string value of the first `"key":"..."` in `json` after `from`.
std::string JsonString(const std::string& json, const std::string& key, size_t from = 0) {
  const std::string needle = absl::StrCat("\"", key, "\":\"");
  const size_t at = json.find(needle, from);
  if (at == std::string::npos) return "";
  const size_t start = at + needle.size();
  return json.substr(start, json.find('"', start) - start);
}

// The number of the first `"key":N` in `json`, -1 if none.
int64_t JsonNumber(const std::string& json, const std::string& key) {
  const std::string needle = absl::StrCat("\"", key, "\":");
  const size_t at = json.find(needle);
  if (at == std::string::npos) return -1;
  const size_t start = at + needle.size();
  int64_t n = -1;
  (void)absl::SimpleAtoi(json.substr(start, json.find_first_of(",}", start) - start), &n);
  return n;
}

std::string LocalOf(const LineClient& client) { return LocalAddress(client.fd())->ToString(); }

std::string ModeName(const ::testing::TestParamInfo<AcceptMode>& param) {
  return param.param == AcceptMode::kReusePort ? "ReusePort" : "AcceptorThread";
}

class AdminPauseTest : public ::testing::TestWithParam<AcceptMode> {};

TEST_P(AdminPauseTest, PausedServerLeavesNewClientsInTheBacklogAndServesThemOnResume) {
  Fixture f = Start(2, Loopback(), GetParam());
  LineClient before(f.server->address());
  ASSERT_TRUE(before.Send("one\n"));
  ASSERT_EQ(before.ReadLine(), "one");

  // 200 only once every listener has left its epoll set.
  const std::string paused = Post(*f.metrics, "/admin/accept/pause", "");
  ASSERT_EQ(Code(paused), 200) << paused;
  EXPECT_TRUE(f.server->accept_paused());
  const std::string health = Get(*f.metrics, "/healthz");
  EXPECT_EQ(Code(health), 503) << health;
  EXPECT_TRUE(absl::StrContains(health, "paused"));

  // The kernel completes the handshake into the backlog; nobody accepts it.
  LineClient waiting(f.server->address());
  ASSERT_TRUE(waiting.connected());
  ASSERT_TRUE(waiting.Send("two\n"));
  // Observing an absence (bounded), not synchronising: no echo comes.
  EXPECT_EQ(waiting.ReadLine(absl::Milliseconds(300)), std::nullopt);
  EXPECT_FALSE(waiting.eof());
  EXPECT_EQ(f.server->Stats().Total().accepted, 1u);
  // Connections already open are served as before.
  ASSERT_TRUE(before.Send("three\n"));
  EXPECT_EQ(before.ReadLine(), "three");

  const std::string resumed = Post(*f.metrics, "/admin/accept/resume", "");
  ASSERT_EQ(Code(resumed), 200) << resumed;
  EXPECT_FALSE(f.server->accept_paused());
  EXPECT_EQ(waiting.ReadLine(), "two");
  EXPECT_EQ(Code(Get(*f.metrics, "/healthz")), 200);
  const std::string metrics = Get(*f.metrics, "/metrics");
  EXPECT_TRUE(absl::StrContains(metrics, "troupe_accept_paused 0"));
  EXPECT_TRUE(absl::StrContains(
      metrics, "troupe_admin_requests_total{action=\"accept_pause\",result=\"ok\"} 1"));
}

INSTANTIATE_TEST_SUITE_P(BothAcceptModes, AdminPauseTest,
                         ::testing::Values(AcceptMode::kAcceptorThread, AcceptMode::kReusePort),
                         ModeName);

TEST(AdminTest, PauseThroughTheServerApiCallsBackOnceApplied) {
  Fixture f = Start(2, AdminOptions{}, AcceptMode::kReusePort);
  testing::Notification paused;
  f.server->PauseAccepting([&paused] { paused.Notify(); });
  ASSERT_TRUE(paused.WaitForNotificationWithTimeout(absl::Seconds(20)));
  LineClient waiting(f.server->address());
  ASSERT_TRUE(waiting.Send("x\n"));
  EXPECT_EQ(waiting.ReadLine(absl::Milliseconds(300)), std::nullopt);
  testing::Notification resumed;
  f.server->ResumeAccepting([&resumed] { resumed.Notify(); });
  ASSERT_TRUE(resumed.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(waiting.ReadLine(), "x");
}

class AdminMaxConnectionsTest : public ::testing::TestWithParam<AcceptMode> {};

TEST_P(AdminMaxConnectionsTest, LoweredLimitRejectsTheNextConnectionAndRaisingItAdmitsAgain) {
  Fixture f = Start(2, Loopback(), GetParam(), /*max_connections=*/100);
  LineClient first(f.server->address());
  ASSERT_TRUE(first.Send("a\n"));
  ASSERT_EQ(first.ReadLine(), "a");

  const std::string lowered = Post(*f.metrics, "/admin/max-connections", "1\n");
  ASSERT_EQ(Code(lowered), 200) << lowered;
  EXPECT_TRUE(absl::StrContains(lowered, "max-connections 100 -> 1"));
  EXPECT_EQ(f.server->max_connections(), 1u);
  EXPECT_TRUE(absl::StrContains(Get(*f.metrics, "/admin/max-connections"), "\n1\n"));
  LineClient rejected(f.server->address());
  EXPECT_TRUE(rejected.WaitForEof());
  EXPECT_EQ(f.server->Stats().rejected, 1u);
  // The open one stays open.
  ASSERT_TRUE(first.Send("b\n"));
  EXPECT_EQ(first.ReadLine(), "b");

  ASSERT_EQ(Code(Post(*f.metrics, "/admin/max-connections", "0")), 200);  // no limit
  LineClient admitted(f.server->address());
  ASSERT_TRUE(admitted.Send("c\n"));
  EXPECT_EQ(admitted.ReadLine(), "c");
  EXPECT_EQ(f.server->Stats().rejected, 1u);
  EXPECT_TRUE(absl::StrContains(Get(*f.metrics, "/metrics"), "troupe_max_connections 0"));
}

INSTANTIATE_TEST_SUITE_P(BothAcceptModes, AdminMaxConnectionsTest,
                         ::testing::Values(AcceptMode::kAcceptorThread, AcceptMode::kReusePort),
                         ModeName);

TEST(AdminTest, LogLevelChangesAndBadLevelsAreRefused) {
  const LogLevelGuard restore;
  SetLogLevel(LogLevel::kInfo);
  Fixture f = Start(1, Loopback());
  const std::string changed = Post(*f.metrics, "/admin/log-level", "debug");
  ASSERT_EQ(Code(changed), 200) << changed;
  EXPECT_TRUE(absl::StrContains(changed, "log-level info -> debug"));
  EXPECT_EQ(GetLogLevel(), LogLevel::kDebug);
  EXPECT_TRUE(absl::StrContains(Get(*f.metrics, "/admin/log-level"), "\ndebug\n"));
  EXPECT_EQ(Code(Post(*f.metrics, "/admin/log-level", "loud")), 400);
  EXPECT_EQ(GetLogLevel(), LogLevel::kDebug);
  EXPECT_EQ(Code(Post(*f.metrics, "/admin/log-level", "warning\n")), 200);
  EXPECT_EQ(GetLogLevel(), LogLevel::kWarning);
}

// Sends what the socket takes now, without blocking.
void Pump(const LineClient& client, const std::string& chunk) {
  while (::send(client.fd(), chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
  }
}

TEST(AdminTest, TopConnectionsPutsTheLargestPendingOutputFirstAcrossReactors) {
  Fixture f = Start(2, Loopback());  // round robin: one client on each reactor
  LineClient heavy(f.server->address());
  LineClient light(f.server->address());
  ASSERT_TRUE(light.Send("x\n"));
  ASSERT_EQ(light.ReadLine(), "x");
  // The heavy client sends without ever reading: the echo backs up into the
  // server's output buffer (up to the high watermark, where reading stops).
  const std::string chunk(64 * 1024, 'h');
  std::string json;
  ASSERT_TRUE(WaitFor([&] {
    Pump(heavy, chunk);
    json = Get(*f.metrics, "/admin/connections?top=10&by=output");
    return JsonNumber(json, "pending_output_bytes") > 0;
  })) << json;
  EXPECT_EQ(Code(json), 200) << json;
  EXPECT_TRUE(absl::StrContains(json, "application/json"));
  EXPECT_EQ(JsonString(json, "peer"), LocalOf(heavy)) << json;
  EXPECT_TRUE(absl::StrContains(json, absl::StrCat("\"peer\":\"", LocalOf(light), "\"")));
  EXPECT_EQ(JsonNumber(json, "reactors"), 2);
  EXPECT_EQ(JsonNumber(json, "scanned"), 2);
  EXPECT_TRUE(absl::StrContains(json, "\"reactor\":0"));
  EXPECT_TRUE(absl::StrContains(json, "\"reactor\":1"));
  EXPECT_EQ(JsonString(json, "state"), "open");
  // top=1: the heavy one alone.
  const std::string one = Get(*f.metrics, "/admin/connections?top=1");
  EXPECT_EQ(JsonString(one, "peer"), LocalOf(heavy)) << one;
  EXPECT_FALSE(absl::StrContains(one, LocalOf(light))) << one;
  // By mailbox: both are there (neither has mail), still two rows.
  const std::string by_mail = Get(*f.metrics, "/admin/connections?by=mailbox");
  EXPECT_EQ(Code(by_mail), 200) << by_mail;
  EXPECT_EQ(JsonString(by_mail, "by"), "mailbox");
  EXPECT_TRUE(absl::StrContains(by_mail, LocalOf(light)));
}

TEST(AdminTest, TopConnectionsIs503WhenAReactorDoesNotAnswer) {
  AdminOptions admin = Loopback();
  admin.reply_deadline = absl::Milliseconds(200);
  Fixture f = Start(2, admin);
  f.server->StopNow();  // its reactors are gone: their tasks never run
  const absl::Time start = absl::Now();
  const std::string response = Get(*f.metrics, "/admin/connections");
  EXPECT_EQ(Code(response), 503) << response;
  EXPECT_TRUE(absl::StrContains(response, "0 of 2 reactors answered"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));  // the deadline, not the client's 5 s
  // A pause that no listener can confirm is 503 too, and the endpoint serves on.
  EXPECT_EQ(Code(Post(*f.metrics, "/admin/accept/pause", "")), 503);
  EXPECT_EQ(Code(Get(*f.metrics, "/admin/log-level")), 200);
}

std::string WriteTokenFile(const std::string& name, const std::string& content) {
  const std::string path = ::testing::TempDir() + name;
  FILE* file = std::fopen(path.c_str(), "w");
  EXPECT_NE(file, nullptr);
  std::fputs(content.c_str(), file);
  std::fclose(file);
  return path;
}

TEST(AdminTest, TokenAuthWantsTheRightBearerToken) {
  AdminOptions admin;
  admin.auth = AdminAuth::kToken;
  admin.token_file = WriteTokenFile("admin_token", "  s3cret-token\n");
  Fixture f = Start(1, admin);
  const std::string none = Get(*f.metrics, "/admin/log-level");
  EXPECT_EQ(Code(none), 401) << none;
  EXPECT_TRUE(absl::StrContains(none, "WWW-Authenticate: Bearer"));
  EXPECT_EQ(Code(Get(*f.metrics, "/admin/log-level", "Authorization: Basic czNjcmV0\r\n")), 401);
  EXPECT_EQ(Code(Get(*f.metrics, "/admin/log-level", "Authorization: Bearer s3cret\r\n")), 403);
  EXPECT_EQ(Code(Get(*f.metrics, "/admin/log-level", "Authorization: Bearer s3cret-token-x\r\n")),
            403);
  EXPECT_EQ(Code(Post(*f.metrics, "/admin/max-connections", "7", "")), 401);
  EXPECT_EQ(f.server->max_connections(), 0u);
  EXPECT_EQ(Code(Get(*f.metrics, "/admin/log-level", "Authorization: Bearer s3cret-token\r\n")),
            200);
  EXPECT_EQ(Code(Post(*f.metrics, "/admin/max-connections", "7",
                      "authorization: bearer s3cret-token\r\n")),
            200);
  EXPECT_EQ(f.server->max_connections(), 7u);
  const std::string metrics = Get(*f.metrics, "/metrics");
  EXPECT_TRUE(absl::StrContains(
      metrics, "troupe_admin_requests_total{action=\"log_level\",result=\"denied\"} 4"));
  EXPECT_TRUE(absl::StrContains(
      metrics, "troupe_admin_requests_total{action=\"max_connections\",result=\"ok\"} 1"));
}

// A browser page can send simple cross-origin requests to 127.0.0.1 (CSRF),
// and DNS rebinding lets it read the answers under its own host name: both
// carry headers curl never sends.
TEST(AdminTest, BrowserRequestsAreRefusedAndCurlLikeOnesServed) {
  const LogLevelGuard restore;
  SetLogLevel(LogLevel::kInfo);
  Fixture f = Start(1, Loopback(), AcceptMode::kAcceptorThread, /*max_connections=*/100);
  const MetricsServer& m = *f.metrics;
  // CSRF: fetch(..., {method: 'POST', mode: 'no-cors', body: '1'}).
  EXPECT_EQ(Code(Post(m, "/admin/max-connections", "1", "Origin: http://evil.example\r\n")), 403);
  EXPECT_EQ(Code(Post(m, "/admin/max-connections", "1", "Origin: null\r\n")), 403);
  EXPECT_EQ(Code(Post(m, "/admin/max-connections", "1", "Sec-Fetch-Site: cross-site\r\n")), 403);
  EXPECT_EQ(Code(Post(m, "/admin/log-level", "off", "Sec-Fetch-Site: same-site\r\n")), 403);
  EXPECT_EQ(Code(Post(m, "/admin/accept/pause", "", "Origin: http://127.0.0.1:9100\r\n")), 403);
  EXPECT_EQ(f.server->max_connections(), 100u);
  EXPECT_EQ(GetLogLevel(), LogLevel::kInfo);
  EXPECT_FALSE(f.server->accept_paused());
  // DNS rebinding: the page's own host name, now resolving to 127.0.0.1.
  for (const char* host : {"evil.example", "evil.example:9100", "127.0.0.1.evil.example",
                           "localhost.evil.example", "127.0.0.1:x", "0x7f.0.0.1", "[::2]", ""}) {
    const std::string response =
        Http(m, absl::StrCat("GET /admin/connections HTTP/1.1\r\nHost: ", host, "\r\n\r\n"));
    EXPECT_EQ(Code(response), 403) << host << "\n" << response;
    EXPECT_FALSE(absl::StrContains(response, "\"connections\"")) << host;
  }
  // What curl (or a typed-in URL: Sec-Fetch-Site: none) sends is served.
  EXPECT_EQ(Code(Get(m, "/admin/connections")), 200);
  for (const char* host :
       {"127.0.0.1", "127.1.2.3:9100", "localhost", "LocalHost:9100", "[::1]", "[::1]:9100"}) {
    const std::string response =
        Http(m, absl::StrCat("GET /admin/log-level HTTP/1.1\r\nHost: ", host, "\r\n\r\n"));
    EXPECT_EQ(Code(response), 200) << host << "\n" << response;
  }
  EXPECT_EQ(Code(Http(m, "GET /admin/log-level HTTP/1.0\r\n\r\n")), 200);  // no Host at all
  EXPECT_EQ(Code(Get(m, "/admin/log-level", "Sec-Fetch-Site: none\r\n")), 200);
  EXPECT_EQ(Code(Post(m, "/admin/max-connections", "5")), 200);
  EXPECT_EQ(f.server->max_connections(), 5u);
  EXPECT_TRUE(absl::StrContains(
      Get(m, "/metrics"),
      "troupe_admin_requests_total{action=\"max_connections\",result=\"denied\"} 3"));
}

TEST(AdminTest, TokenAuthRefusesBrowserRequestsEvenWithTheToken) {
  AdminOptions admin;
  admin.auth = AdminAuth::kToken;
  admin.token_file = WriteTokenFile("admin_token_browser", "tok\n");
  Fixture f = Start(1, admin);
  const std::string auth = "Authorization: Bearer tok\r\n";
  EXPECT_EQ(Code(Post(*f.metrics, "/admin/max-connections", "3",
                      auth + "Origin: https://evil.example\r\n")),
            403);
  EXPECT_EQ(Code(Post(*f.metrics, "/admin/max-connections", "3",
                      auth + "Sec-Fetch-Site: cross-site\r\n")),
            403);
  EXPECT_EQ(f.server->max_connections(), 0u);
  // Token mode serves any host name (it may sit behind one).
  EXPECT_EQ(Code(Http(*f.metrics, absl::StrCat("GET /admin/log-level HTTP/1.1\r\nHost: "
                                               "admin.example\r\n",
                                               auth, "\r\n"))),
            200);
  EXPECT_EQ(Code(Post(*f.metrics, "/admin/max-connections", "3", auth)), 200);
  EXPECT_EQ(f.server->max_connections(), 3u);
}

// Wakes the blocked reactor when the test ends, however it ends.
struct NotifyOnExit {
  testing::Notification& notification;
  ~NotifyOnExit() {
    if (!notification.HasBeenNotified()) notification.Notify();
  }
};

TEST(AdminTest, TopConnectionsServesOneGatherAtATime) {
  // Declared before the fixture: the reactor's task waits on them until the
  // fixture has stopped it.
  testing::Notification busy;
  testing::Notification release;
  AdminOptions admin = Loopback();
  admin.reply_deadline = absl::Seconds(60);  // the held gather must not time out
  Fixture f = Start(1, admin);
  const NotifyOnExit unblock{release};
  // The one reactor is kept busy until the test releases it: the gather
  // posted to it waits in its queue.
  f.server->reactor(0).Post([&busy, &release] {
    busy.Notify();
    release.WaitForNotificationWithTimeout(absl::Seconds(30));
  });
  ASSERT_TRUE(busy.WaitForNotificationWithTimeout(absl::Seconds(20)));
  const std::string request =
      absl::StrCat("GET /admin/connections HTTP/1.1\r\n", HostLine(*f.metrics), "\r\n");
  LineClient a(f.metrics->address());
  LineClient b(f.metrics->address());
  ASSERT_TRUE(a.Send(request));
  ASSERT_TRUE(b.Send(request));
  // The HTTP loop takes them in either order: the first starts a gather
  // (held behind the busy reactor), the second is refused at once.
  LineClient* refused = nullptr;
  LineClient* held = nullptr;
  std::string status_line;
  ASSERT_TRUE(WaitFor(
      [&] {
        for (LineClient* c : {&a, &b}) {
          if (std::optional<std::string> line = c->ReadLine(absl::Milliseconds(1))) {
            status_line = *line;
            refused = c;
            held = c == &a ? &b : &a;
            return true;
          }
        }
        return false;
      },
      absl::Seconds(10)))
      << "neither request was refused while the other gathered";
  EXPECT_EQ(status_line, "HTTP/1.1 503 Service Unavailable\r");
  ASSERT_TRUE(refused->WaitForEof());
  std::string rest;
  while (std::optional<std::string> line = refused->ReadLine(absl::Milliseconds(10))) {
    rest += *line + "\n";
  }
  EXPECT_TRUE(absl::StrContains(rest, "Retry-After: 1\r\n")) << rest;
  EXPECT_FALSE(held->eof());
  release.Notify();
  EXPECT_EQ(held->ReadLine(), "HTTP/1.1 200 OK\r");
  // Answered: the next one may gather.
  EXPECT_EQ(Code(Get(*f.metrics, "/admin/connections")), 200);
  const std::string metrics = Get(*f.metrics, "/metrics");
  EXPECT_TRUE(absl::StrContains(
      metrics, "troupe_admin_requests_total{action=\"connections\",result=\"unavailable\"} 1"))
      << metrics;
  EXPECT_TRUE(absl::StrContains(
      metrics, "troupe_admin_requests_total{action=\"connections\",result=\"ok\"} 2"));
}

TEST(AdminTest, AdminOffHasNoAdminPaths) {
  Fixture f = Start(1, AdminOptions{});
  EXPECT_EQ(Code(Post(*f.metrics, "/admin/max-connections", "1")), 404);
  EXPECT_EQ(Code(Post(*f.metrics, "/admin/accept/pause", "")), 404);
  EXPECT_EQ(Code(Get(*f.metrics, "/admin/connections")), 404);
  EXPECT_EQ(f.server->max_connections(), 0u);
  EXPECT_FALSE(f.server->accept_paused());
  EXPECT_FALSE(absl::StrContains(Get(*f.metrics, "/metrics"), "troupe_admin_requests_total"));
}

TEST(AdminTest, GarbageGetsTheRight4xxAndNeverStopsTheEndpoint) {
  Fixture f = Start(1, Loopback());
  const MetricsServer& m = *f.metrics;
  EXPECT_EQ(Code(Http(m, "PUT /admin/log-level HTTP/1.1\r\nContent-Length: 4\r\n\r\ninfo")), 405);
  EXPECT_EQ(Code(Get(m, "/admin/accept/pause")), 405);
  EXPECT_EQ(Code(Post(m, "/admin/connections", "")), 405);
  EXPECT_EQ(Code(Get(m, "/admin/nope")), 404);
  // POST needs a length; chunked bodies are refused.
  EXPECT_EQ(Code(Http(m, "POST /admin/log-level HTTP/1.1\r\n\r\n")), 411);
  EXPECT_EQ(Code(Http(m,
                      "POST /admin/log-level HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\ndebug\r\n0\r\n\r\n")),
            411);
  // Too large, judged from the head alone (the body never needs to come).
  EXPECT_EQ(Code(Http(m, "POST /admin/log-level HTTP/1.1\r\nContent-Length: 5000\r\n\r\n")), 413);
  EXPECT_EQ(Code(Http(m, "POST /admin/log-level HTTP/1.1\r\nContent-Length: x1\r\n\r\n")), 400);
  EXPECT_EQ(Code(Http(m,
                      "POST /admin/log-level HTTP/1.1\r\nContent-Length: 4\r\n"
                      "Content-Length: 5\r\n\r\ninfo")),
            400);
  EXPECT_EQ(Code(Http(m, "GET /admin/log-level HTTP/1.1\r\nno colon here\r\n\r\n")), 400);
  EXPECT_EQ(Code(Post(m, "/admin/max-connections", "-3")), 400);
  EXPECT_EQ(Code(Post(m, "/admin/max-connections", "lots")), 400);
  EXPECT_EQ(Code(Post(m, "/admin/max-connections", "")), 400);
  EXPECT_EQ(Code(Post(m, "/admin/max-connections", "99999999999999999999999")), 400);
  EXPECT_EQ(Code(Post(m, "/admin/log-level", "")), 400);
  EXPECT_EQ(Code(Get(m, "/admin/connections?top=0")), 400);
  EXPECT_EQ(Code(Get(m, "/admin/connections?top=1001")), 400);
  EXPECT_EQ(Code(Get(m, "/admin/connections?top=abc")), 400);
  EXPECT_EQ(Code(Get(m, "/admin/connections?by=size")), 400);
  EXPECT_EQ(Code(Get(m, "/admin/connections?limit=3")), 400);
  EXPECT_EQ(Code(Http(m, "GARBAGE\r\n\r\n")), 400);
  // A body sent in pieces is waited for, then used.
  {
    LineClient client(m.address());
    ASSERT_TRUE(client.Send("POST /admin/max-connections HTTP/1.1\r\nContent-Length: 2\r\n\r\n4"));
    EXPECT_EQ(client.ReadLine(absl::Milliseconds(100)), std::nullopt);  // still waiting
    ASSERT_TRUE(client.Send("2"));
    EXPECT_EQ(client.ReadLine(), "HTTP/1.1 200 OK\r");
  }
  EXPECT_EQ(f.server->max_connections(), 42u);
  // Still serving after all that.
  EXPECT_EQ(Code(Get(m, "/healthz")), 200);
  EXPECT_EQ(Code(Get(m, "/admin/connections")), 200);
}

TEST(AdminTest, CreateRefusesTokenFilesThatCannotBeUsed) {
  ServerOptions server_options;
  server_options.address = *Address::Parse("127.0.0.1:0");
  auto server = Server::Create(server_options, testing::EchoHandlerFactory());
  ASSERT_TRUE(server.ok()) << server.status();
  const Address local = *Address::Parse("127.0.0.1:0");
  AdminOptions admin;
  admin.auth = AdminAuth::kToken;
  admin.token_file = ::testing::TempDir() + "no-such-token-file";
  MetricsServerOptions options;
  options.admin = admin;
  absl::StatusOr<std::unique_ptr<MetricsServer>> missing =
      MetricsServer::Create(local, server->get(), options);
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::StrContains(missing.status().message(), admin.token_file)) << missing.status();
  options.admin.token_file = WriteTokenFile("empty_token", " \n\t\n");
  absl::StatusOr<std::unique_ptr<MetricsServer>> empty =
      MetricsServer::Create(local, server->get(), options);
  ASSERT_FALSE(empty.ok());
  EXPECT_TRUE(absl::StrContains(empty.status().message(), "is empty")) << empty.status();
  options.admin.token_file.clear();
  EXPECT_FALSE(MetricsServer::Create(local, server->get(), options).ok());
}

TEST(AdminTest, CreateRefusesLoopbackAuthOnAnAddressOthersCanReach) {
  ServerOptions server_options;
  server_options.address = *Address::Parse("127.0.0.1:0");
  auto server = Server::Create(server_options, testing::EchoHandlerFactory());
  ASSERT_TRUE(server.ok()) << server.status();
  MetricsServerOptions options;
  options.admin = Loopback();
  absl::StatusOr<std::unique_ptr<MetricsServer>> wide =
      MetricsServer::Create(*Address::Parse("0.0.0.0:0"), server->get(), options);
  ASSERT_FALSE(wide.ok());
  EXPECT_TRUE(absl::StrContains(wide.status().message(), "loopback")) << wide.status();
  EXPECT_TRUE(MetricsServer::Create(*Address::Parse("127.0.0.1:0"), server->get(), options).ok());
}

TEST(AdminTest, IsLoopbackKnowsTheLoopbackRanges) {
  EXPECT_TRUE(IsLoopback(*Address::Parse("127.0.0.1:1")));
  EXPECT_TRUE(IsLoopback(*Address::Parse("127.8.9.10:1")));
  EXPECT_TRUE(IsLoopback(*Address::Parse("[::1]:1")));
  EXPECT_TRUE(IsLoopback(*Address::Parse("[::ffff:127.0.0.1]:1")));
  EXPECT_FALSE(IsLoopback(*Address::Parse("0.0.0.0:1")));
  EXPECT_FALSE(IsLoopback(*Address::Parse("10.0.0.1:1")));
  EXPECT_FALSE(IsLoopback(*Address::Parse("[::]:1")));
  EXPECT_FALSE(IsLoopback(*Address::Parse("[::ffff:10.0.0.1]:1")));
}

TEST(HttpRequestTest, ParsesFramesAndRefuses) {
  HttpParse p = ParseHttpRequest("GET /a?b=1 HTTP/1.1\r\nX-Y:  z \r\n\r\n", 8192, 1024);
  ASSERT_EQ(p.status, HttpParse::kComplete);
  EXPECT_EQ(p.request.method, "GET");
  EXPECT_EQ(p.request.path, "/a");
  EXPECT_EQ(p.request.query, "b=1");
  EXPECT_EQ(p.request.Header("x-y"), "z");
  EXPECT_EQ(p.request.Header("nope"), std::nullopt);
  EXPECT_FALSE(p.request.has_content_length);
  EXPECT_EQ(ParseHttpRequest("GET / HTTP/1.1\r\n", 8192, 1024).status, HttpParse::kIncomplete);
  EXPECT_EQ(ParseHttpRequest("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab", 8192, 1024).status,
            HttpParse::kIncomplete);
  p = ParseHttpRequest("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 8192, 1024);
  ASSERT_EQ(p.status, HttpParse::kComplete);
  EXPECT_EQ(p.request.body, "abc");
  EXPECT_EQ(ParseHttpRequest("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", 8192, 1024).code,
            400);
  EXPECT_EQ(ParseHttpRequest("GET  / HTTP/1.1\r\n\r\n", 8192, 1024).code, 400);
  EXPECT_EQ(ParseHttpRequest("GET / HTTP/1.1\r\n folded\r\n\r\n", 8192, 1024).code, 400);
  EXPECT_EQ(ParseHttpRequest(std::string(9000, 'a'), 8192, 1024).code, 431);
}

}  // namespace
}  // namespace troupe
