// The metrics endpoint, scraped over real loopback HTTP while a server runs.
#include "core/ops/metrics_server.h"

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
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

Fixture Start(int workers) {
  Fixture f;
  ServerOptions options;
  options.address = *Address::Parse("127.0.0.1:0");
  options.workers = workers;
  f.server = std::move(Server::Create(options, testing::EchoHandlerFactory()).value());
  f.metrics =
      std::move(MetricsServer::Create(*Address::Parse("127.0.0.1:0"), f.server.get()).value());
  f.server->Start();
  f.metrics->Start();
  return f;
}

// Sends `request` raw; everything answered until EOF, lines joined by "\n".
std::string Http(const MetricsServer& metrics, const std::string& request) {
  return testing::RequestUntilEof(metrics.address(), request);
}

// Sums every sample of `name` whose labels contain `label_filter`.
double Sum(const std::string& body, const std::string& name, const std::string& label_filter = "") {
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    const absl::string_view key = line.substr(0, space);
    if (!(key == name || absl::StartsWith(key, name + "{"))) continue;
    if (!label_filter.empty() && !absl::StrContains(key, label_filter)) continue;
    double v = 0;
    EXPECT_TRUE(absl::SimpleAtod(line.substr(space + 1), &v)) << line;
    sum += v;
  }
  return sum;
}

// The value of the one sample named exactly `name` (no labels), or nullopt
// when the scrape has none: unlike Sum, an absent gauge is not 0.
std::optional<double> Sample(const std::string& body, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (!absl::StartsWith(line, name + " ")) continue;
    double v = 0;
    if (!absl::SimpleAtod(line.substr(name.size() + 1), &v)) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

TEST(MetricsServerTest, CountersAddUpAfterEchoTraffic) {
  Fixture f = Start(2);
  constexpr int kClients = 12;
  uint64_t bytes = 0;
  {
    std::vector<std::unique_ptr<LineClient>> clients;
    for (int i = 0; i < kClients; ++i) {
      clients.push_back(std::make_unique<LineClient>(f.server->address()));
      const std::string line = absl::StrCat("client ", i, " says hello\n");
      ASSERT_TRUE(clients.back()->Send(line));
      ASSERT_TRUE(clients.back()->ReadLine().has_value());
      bytes += line.size();
    }
    // Mid-run scrape: every connection is open.
    const std::string mid = Http(*f.metrics, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(absl::StartsWith(mid, "HTTP/1.1 200 OK")) << mid;
    EXPECT_EQ(Sum(mid, "troupe_connections_open"), kClients);
    EXPECT_EQ(Sum(mid, "troupe_connections_accepted_total"), kClients);
    EXPECT_GT(Sum(mid, "troupe_loop_turn_seconds_count"), 0);
  }
  ASSERT_TRUE(WaitFor([&] { return f.server->Stats().Total().closed == kClients; }));
  const std::string body = Http(*f.metrics, "GET /metrics HTTP/1.1\r\n\r\n");
  const double accepted = Sum(body, "troupe_connections_accepted_total");
  EXPECT_EQ(accepted, kClients);
  EXPECT_EQ(accepted,
            Sum(body, "troupe_connections_open") + Sum(body, "troupe_connections_closed_total"));
  EXPECT_EQ(Sum(body, "troupe_connections_closed_total", "reason=\"peer_closed\""), kClients);
  EXPECT_EQ(Sum(body, "troupe_bytes_received_total"), bytes);
  EXPECT_EQ(Sum(body, "troupe_bytes_sent_total"), bytes);  // echo: out == in
  // Both reactors are reported.
  EXPECT_TRUE(absl::StrContains(body, "troupe_bytes_sent_total{reactor=\"1\"}"));
  EXPECT_GT(Sum(body, "troupe_loop_turn_seconds_count"), 0);
  EXPECT_EQ(Sum(body, "troupe_loop_turn_seconds_bucket", "le=\"+Inf\""),
            Sum(body, "troupe_loop_turn_seconds_count"));
}

TEST(MetricsServerTest, ScrapesDuringTrafficAreConsistentAndMonotonic) {
  Fixture f = Start(2);
  std::atomic<bool> stop{false};
  std::atomic<int> round_trips{0};
  std::vector<std::thread> traffic;
  for (int t = 0; t < 4; ++t) {
    traffic.emplace_back([&, t] {
      LineClient client(f.server->address());
      const std::string line = absl::StrCat("traffic ", t, "\n");
      while (!stop.load()) {
        if (!client.Send(line) || !client.ReadLine().has_value()) return;
        round_trips.fetch_add(1);
      }
    });
  }
  double last_in = 0, last_out = 0;
  for (int scrape = 0; scrape < 5; ++scrape) {
    const int before = round_trips.load();
    ASSERT_TRUE(WaitFor([&] { return round_trips.load() > before; }));  // traffic is flowing
    const std::string body = Http(*f.metrics, "GET /metrics HTTP/1.1\r\n\r\n");
    const double in = Sum(body, "troupe_bytes_received_total");
    const double out = Sum(body, "troupe_bytes_sent_total");
    EXPECT_EQ(Sum(body, "troupe_connections_accepted_total"),
              Sum(body, "troupe_connections_open") + Sum(body, "troupe_connections_closed_total"));
    EXPECT_LE(out, in) << "an echo server cannot send more than it received";
    EXPECT_GE(in, last_in);
    EXPECT_GE(out, last_out);
    last_in = in;
    last_out = out;
  }
  EXPECT_GT(last_out, 0);
  stop.store(true);
  for (auto& t : traffic) t.join();
}

TEST(MetricsServerTest, HealthzFlipsTo503WhileDraining) {
  Fixture f = Start(1);
  EXPECT_TRUE(
      absl::StartsWith(Http(*f.metrics, "GET /healthz HTTP/1.1\r\n\r\n"), "HTTP/1.1 200 OK"));
  // troupe_up is a gauge that must flip 1 -> 0: seen at 1 first, and read as
  // a sample that is there (a missing gauge is no evidence of draining).
  EXPECT_EQ(Sample(Http(*f.metrics, "GET /metrics HTTP/1.1\r\n\r\n"), "troupe_up"), 1.0);
  // A client that stays connected keeps the drain going.
  LineClient holdout(f.server->address());
  ASSERT_TRUE(holdout.Send("x\n"));
  ASSERT_EQ(holdout.ReadLine(), "x");
  testing::Notification stopped;
  std::thread stopper([&] {
    f.server->Stop();
    stopped.Notify();
  });
  ASSERT_TRUE(WaitFor([&] { return !f.server->accepting(); }));
  const std::string draining = Http(*f.metrics, "GET /healthz HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(draining, "HTTP/1.1 503")) << draining;
  EXPECT_TRUE(absl::StrContains(draining, "draining"));
  EXPECT_EQ(Sample(Http(*f.metrics, "GET /metrics HTTP/1.1\r\n\r\n"), "troupe_up"), 0.0);
  holdout.WaitForEof();
  holdout.Close();
  EXPECT_TRUE(stopped.WaitForNotificationWithTimeout(absl::Seconds(20)));
  stopper.join();
}

TEST(MetricsServerTest, BadRequestsGetErrorsNotCrashes) {
  Fixture f = Start(1);
  EXPECT_TRUE(absl::StartsWith(Http(*f.metrics, "NONSENSE\r\n\r\n"), "HTTP/1.1 400"));
  EXPECT_TRUE(absl::StartsWith(Http(*f.metrics, "GET /metrics SPDY/9\r\n\r\n"), "HTTP/1.1 400"));
  EXPECT_TRUE(absl::StartsWith(Http(*f.metrics, "POST /metrics HTTP/1.1\r\n\r\n"), "HTTP/1.1 405"));
  EXPECT_TRUE(absl::StartsWith(Http(*f.metrics, "GET /nope HTTP/1.1\r\n\r\n"), "HTTP/1.1 404"));
  const std::string huge = "GET /metrics HTTP/1.1\r\nX-Filler: " + std::string(20000, 'a');
  EXPECT_TRUE(absl::StartsWith(Http(*f.metrics, huge), "HTTP/1.1 431"));
  // Still serving after all that.
  EXPECT_TRUE(
      absl::StartsWith(Http(*f.metrics, "GET /healthz HTTP/1.0\r\n\r\n"), "HTTP/1.1 200 OK"));
  // HEAD: headers only.
  const std::string head = Http(*f.metrics, "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(head, "HTTP/1.1 200 OK"));
  EXPECT_FALSE(absl::StrContains(head, "troupe_up"));
}

TEST(MetricsServerTest, RenderNamesEveryCloseReason) {
  ServerStats stats;
  stats.reactors.resize(1);
  const std::string body = RenderPrometheus(stats, true);
  for (size_t r = 0; r < static_cast<size_t>(CloseReason::kCount); ++r) {
    EXPECT_TRUE(absl::StrContains(
        body, absl::StrCat("reason=\"", CloseReasonName(static_cast<CloseReason>(r)), "\"")));
  }
  EXPECT_FALSE(absl::StrContains(body, "unknown"));
}

TEST(MetricsServerTest, RenderExportsMailDropsByReasonAndQueueDepths) {
  ServerStats stats;
  stats.reactors.resize(2);
  stats.reactors[1].mail_dropped_by_reason[static_cast<size_t>(MailDrop::kInboxFull)] = 7;
  stats.reactors[0].mailbox_depth = 3;
  stats.reactors[1].mailbox_depth_max = 1024;
  stats.reactors[0].inbox_mail_depth = 5;
  stats.reactors[1].inbox_mail_depth_max = 65536;
  stats.reactors[1].frames_shed = 11;
  const std::string body = RenderPrometheus(stats, true);
  for (size_t r = 0; r < static_cast<size_t>(MailDrop::kCount); ++r) {
    EXPECT_TRUE(
        absl::StrContains(body, absl::StrCat("troupe_mail_dropped_total{reactor=\"0\",reason=\"",
                                             MailDropName(static_cast<MailDrop>(r)), "\"} 0")));
  }
  EXPECT_EQ(Sum(body, "troupe_mail_dropped_total", "reason=\"inbox_full\""), 7);
  EXPECT_EQ(Sum(body, "troupe_mailbox_depth"), 3);
  EXPECT_EQ(Sum(body, "troupe_mailbox_depth_max", "reactor=\"1\""), 1024);
  EXPECT_EQ(Sum(body, "troupe_inbox_mail_depth"), 5);
  EXPECT_EQ(Sum(body, "troupe_inbox_mail_depth_max"), 65536);
  EXPECT_EQ(Sum(body, "troupe_frames_shed_total"), 11);
  EXPECT_FALSE(absl::StrContains(body, "unknown"));
}

double Seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

double ProcessCpuSeconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return Seconds(usage.ru_utime) + Seconds(usage.ru_stime);
}

TEST(MetricsServerTest, IdlesWhileEveryClientSlotIsTakenAndServesWhenOneFrees) {
  Fixture f = Start(1);
  // 64 clients that send nothing hold every slot; one more waits in the
  // backlog with its request already sent.
  std::vector<std::unique_ptr<LineClient>> idle;
  for (int i = 0; i < 64; ++i) idle.push_back(std::make_unique<LineClient>(f.metrics->address()));
  LineClient waiting(f.metrics->address());
  ASSERT_TRUE(waiting.Send("GET /healthz HTTP/1.1\r\n\r\n"));
  // A level-triggered listener left in the epoll set would spin the thread
  // at 100% here; idle, the process burns next to nothing.
  const double before = ProcessCpuSeconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // observing, not syncing
  EXPECT_LT(ProcessCpuSeconds() - before, 0.2);
  // A freed slot lets the waiting scrape in, well before the idle clients'
  // own 5 s deadline would have freed one.
  idle.front()->Close();
  std::optional<std::string> status = waiting.ReadLine(absl::Milliseconds(4500));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(absl::StartsWith(*status, "HTTP/1.1 200")) << *status;
}

TEST(MetricsServerTest, AClientTricklingItsRequestIsDroppedFiveSecondsAfterConnecting) {
  // A slow-loris scraper: one byte of an endless head every 500 ms keeps any
  // idle timeout from firing; only the deadline from the accept cuts it.
  Fixture f = Start(1);
  LineClient slow(f.metrics->address());
  const absl::Time start = absl::Now();
  bool cut = false;
  for (int i = 0; i < 40 && !cut; ++i) {  // 20 s at most
    slow.Send("a");
    cut = slow.WaitForEof(absl::Milliseconds(500));
  }
  ASSERT_TRUE(cut) << "still connected after 20 s of trickling";
  EXPECT_GE(absl::Now() - start, absl::Seconds(4));  // not cut for being slow at once
}

}  // namespace
}  // namespace troupe
