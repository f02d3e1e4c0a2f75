#include "apps/echo_load/load_client.h"

#include <dirent.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "core/address.h"
#include "core/check.h"
#include "core/fd.h"
#include "core/socket.h"
#include "gtest/gtest.h"

namespace troupe {
namespace {

int CountOpenFds() {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  while (::readdir(dir) != nullptr) ++n;
  ::closedir(dir);
  return n;
}

// A small echo server on 127.0.0.1:<kernel-picked port>, one poll() thread,
// written independently of the troupe server so the client is tested
// against something else. It can misbehave on purpose:
//   corrupt_at: flips the byte at this stream offset of every connection;
//   close_at:   closes a connection once it has received this many bytes.
struct EchoFaults {
  int64_t corrupt_at = -1;
  int64_t close_at = -1;
};

class TestEchoServer {
 public:
  explicit TestEchoServer(EchoFaults faults = {}) : faults_(faults) {
    // gtest's ASSERT_* cannot be used in a constructor; a broken setup aborts.
    absl::StatusOr<Fd> listener =
        ListenTcp(*Address::FromHostPort("127.0.0.1", 0));
    TROUPE_CHECK(listener.ok(), "listen on 127.0.0.1:0");
    listener_ = *std::move(listener);
    port_ = LocalAddress(listener_.get())->port();
    stop_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    TROUPE_CHECK(stop_.valid(), "eventfd");
    thread_ = std::thread([this] { Loop(); });
  }

  ~TestEchoServer() {
    const uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
    thread_.join();
  }

  Address address() const { return *Address::FromHostPort("127.0.0.1", port_); }

 private:
  struct Peer {
    Fd fd;
    int64_t offset = 0;   // Stream bytes received so far.
    std::string pending;  // Echo bytes the kernel has not taken yet.
  };

  // Bounds each connection's unsent echo: beyond it, the server stops
  // reading, as a real server's high watermark would.
  static constexpr size_t kMaxPending = 1 << 20;

  void Loop() {
    std::vector<std::unique_ptr<Peer>> peers;
    std::vector<pollfd> fds;
    char buffer[64 * 1024];
    for (;;) {
      fds.clear();
      fds.push_back({stop_.get(), POLLIN, 0});
      fds.push_back({listener_.get(), POLLIN, 0});
      for (auto& p : peers) {
        short events = p->pending.size() < kMaxPending ? POLLIN : 0;
        if (!p->pending.empty()) events |= POLLOUT;
        fds.push_back({p->fd.get(), events, 0});
      }
      if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return;
      if (fds[0].revents != 0) return;
      if (fds[1].revents != 0) {
        for (;;) {
          const int fd = ::accept4(listener_.get(), nullptr, nullptr,
                                   SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          auto peer = std::make_unique<Peer>();
          peer->fd = Fd(fd);
          peers.push_back(std::move(peer));
        }
      }
      for (size_t i = 0; i + 2 < fds.size(); ++i) {
        Peer& p = *peers[i];
        const short revents = fds[i + 2].revents;
        bool done = false;
        if (revents & (POLLIN | POLLHUP | POLLERR)) {
          const ssize_t n = ::recv(p.fd.get(), buffer, sizeof(buffer), 0);
          if (n > 0) {
            const int64_t corrupt = faults_.corrupt_at;
            if (corrupt >= p.offset && corrupt < p.offset + n) {
              buffer[corrupt - p.offset] ^= 0x01;
            }
            p.offset += n;
            p.pending.append(buffer, static_cast<size_t>(n));
            if (faults_.close_at >= 0 && p.offset >= faults_.close_at)
              done = true;
          } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            done = true;
          }
        }
        if (!done && !p.pending.empty()) {
          const ssize_t n = ::send(p.fd.get(), p.pending.data(),
                                   p.pending.size(), MSG_NOSIGNAL);
          if (n > 0) {
            p.pending.erase(0, static_cast<size_t>(n));
          } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            done = true;
          }
        }
        if (done) p.fd.Reset();
      }
      std::erase_if(peers, [](const auto& p) { return !p->fd.valid(); });
    }
  }

  const EchoFaults faults_;
  Fd listener_;
  Fd stop_;
  uint16_t port_ = 0;
  std::thread thread_;
};

LoadOptions ShortRun(const Address& target) {
  LoadOptions options;
  options.target = target;
  options.connections = 4;
  options.threads = 2;
  options.message_size = 100;  // Not a divisor of anything in the client.
  options.pipeline = 8;
  options.warmup = absl::Milliseconds(100);
  options.duration = absl::Seconds(1);
  return options;
}

TEST(LoadClientTest, CleanRunAgainstEchoServerHasNoErrors) {
  const int fds_before = CountOpenFds();
  {
    TestEchoServer server;
    absl::StatusOr<LoadReport> report = RunLoad(ShortRun(server.address()));
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->ok()) << FormatReportText(*report);
    EXPECT_EQ(report->connections_requested, 4);
    EXPECT_EQ(report->connections_established, 4);
    EXPECT_EQ(report->connections_failed, 0);
    EXPECT_GT(report->messages, 0u);
    EXPECT_EQ(report->latency_ns.count(), report->messages);
    EXPECT_GT(report->bytes, 0u);
    EXPECT_GE(report->measured, absl::Seconds(1));
    EXPECT_TRUE(report->first_errors.empty());
  }
  EXPECT_EQ(CountOpenFds(), fds_before);
}

TEST(LoadClientTest, LargeMessagesSurvivePartialSendsAndReads) {
  TestEchoServer server;
  LoadOptions options = ShortRun(server.address());
  options.connections = 2;
  options.message_size = 300 * 1024 + 7;  // Several sends and reads each.
  options.pipeline = 3;
  options.warmup = absl::ZeroDuration();
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << FormatReportText(*report);
  EXPECT_GT(report->messages, 0u);
}

TEST(LoadClientTest, OneByteMessagesWithDeepPipeline) {
  TestEchoServer server;
  LoadOptions options = ShortRun(server.address());
  options.connections = 3;
  options.threads = 1;
  options.message_size = 1;
  options.pipeline = 64;
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << FormatReportText(*report);
  EXPECT_GT(report->messages, 0u);
}

TEST(LoadClientTest, CorruptedEchoIsReportedOncePerConnection) {
  TestEchoServer server({.corrupt_at = 1000});
  LoadOptions options = ShortRun(server.address());
  options.connections = 3;
  options.warmup = absl::ZeroDuration();
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->ok());
  EXPECT_EQ(report->verification_errors, 3u);
  EXPECT_EQ(report->connections_lost, 0u);
  ASSERT_FALSE(report->first_errors.empty());
  EXPECT_TRUE(absl::StrContains(report->first_errors[0],
                                "echo mismatch at stream offset 1000"))
      << report->first_errors[0];
  EXPECT_TRUE(absl::StrContains(FormatReportText(*report), "verification 3"));
}

TEST(LoadClientTest, PeerCloseIsReportedAsLostConnection) {
  TestEchoServer server({.close_at = 5000});
  LoadOptions options = ShortRun(server.address());
  options.connections = 2;
  options.warmup = absl::ZeroDuration();
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->ok());
  EXPECT_EQ(report->connections_lost, 2u);
  EXPECT_EQ(report->verification_errors, 0u);
  ASSERT_FALSE(report->first_errors.empty());
  EXPECT_TRUE(absl::StrContains(report->first_errors[0], "lost"))
      << report->first_errors[0];
}

TEST(LoadClientTest, RefusedTargetIsAnErrorNamingTheAddress) {
  // A bound socket that does not listen: connects to it are refused, and
  // holding it keeps the port from being reused meanwhile.
  Fd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(holder.valid());
  Address any = *Address::FromHostPort("127.0.0.1", 0);
  ASSERT_EQ(::bind(holder.get(), any.sockaddr_ptr(), any.length()), 0);
  LoadOptions options = ShortRun(*LocalAddress(holder.get()));
  options.connect_timeout = absl::Seconds(10);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(
      absl::StrContains(report.status().message(), options.target.ToString()))
      << report.status();
  EXPECT_TRUE(absl::StrContains(report.status().message(), "refused"))
      << report.status();
}

TEST(LoadClientTest, InvalidOptionsAreRejectedBeforeConnecting) {
  LoadOptions good = ShortRun(*Address::FromHostPort("127.0.0.1", 9));
  EXPECT_TRUE(ValidateLoadOptions(good).ok());
  auto expect_invalid = [&](auto mutate) {
    LoadOptions o = good;
    mutate(o);
    absl::StatusOr<LoadReport> report = RunLoad(o);
    EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument)
        << report.status();
  };
  expect_invalid([](LoadOptions& o) { o.message_size = 0; });
  expect_invalid([](LoadOptions& o) { o.connections = 0; });
  expect_invalid([](LoadOptions& o) { o.pipeline = 0; });
  expect_invalid([](LoadOptions& o) { o.threads = -1; });
  expect_invalid([](LoadOptions& o) { o.duration = absl::ZeroDuration(); });
  expect_invalid([](LoadOptions& o) { o.warmup = absl::Seconds(-1); });
  expect_invalid([](LoadOptions& o) { o.target = Address(); });
  expect_invalid([](LoadOptions& o) { o.target.set_port(0); });
}

// Checks the structure a JSON parser relies on: strings closed, escapes
// well-formed, braces and brackets balanced and properly nested.
bool LooksLikeOneJsonObject(const std::string& json) {
  std::string stack;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c == '\\') {
        if (++i >= json.size()) return false;
        if (std::strchr("\"\\/bfnrtu", json[i]) == nullptr) return false;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '{' || c == '[') stack.push_back(c);
    if (c == '}' || c == ']') {
      if (stack.empty() || stack.back() != (c == '}' ? '{' : '[')) return false;
      stack.pop_back();
      if (stack.empty() &&
          json.find_first_not_of("\n", i + 1) != std::string::npos) {
        return false;  // Something after the object.
      }
    }
  }
  return !in_string && stack.empty() && !json.empty() && json.front() == '{';
}

TEST(LoadClientTest, JsonReportIsOneWellFormedObject) {
  TestEchoServer server;
  LoadOptions options = ShortRun(server.address());
  options.duration = absl::Milliseconds(300);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  const std::string json = FormatReportJson(*report);
  EXPECT_TRUE(LooksLikeOneJsonObject(json)) << json;
  for (const char* key :
       {"\"target\":\"127.0.0.1:", "\"connections\":{\"requested\":4",
        "\"messages\":", "\"messages_per_s\":", "\"mib_per_s\":",
        "\"latency_us\":{\"p50\":", "\"p99_9\":", "\"errors\":{\"total\":0",
        "\"ok\":true"}) {
    EXPECT_TRUE(absl::StrContains(json, key)) << key << " in " << json;
  }
}

TEST(LoadClientTest, JsonEscapesErrorText) {
  LoadReport report;
  report.target = "127.0.0.1:1";
  report.verification_errors = 1;
  report.first_errors = {"quote \" backslash \\ newline \n tab \t bell \a"};
  const std::string json = FormatReportJson(report);
  EXPECT_TRUE(LooksLikeOneJsonObject(json)) << json;
  EXPECT_TRUE(absl::StrContains(
      json, R"("quote \" backslash \\ newline \n tab \t bell \u0007")"))
      << json;
  EXPECT_TRUE(absl::StrContains(json, "\"ok\":false"));
}

TEST(LoadClientTest, TextReportNamesTheUnits) {
  LoadReport report;
  report.target = "127.0.0.1:1";
  report.measured = absl::Seconds(2);
  report.messages = 10;
  report.bytes = 2 * 1024 * 1024;
  report.latency_ns.Record(1500);
  const std::string text = FormatReportText(report);
  EXPECT_TRUE(absl::StrContains(text, "5.0 msg/s")) << text;
  EXPECT_TRUE(absl::StrContains(text, "1.00 MiB/s")) << text;
  EXPECT_TRUE(absl::StrContains(text, "one direction")) << text;
  EXPECT_TRUE(absl::StrContains(text, "p50 1.5")) << text;
  EXPECT_TRUE(absl::StrContains(text, "errors        none")) << text;
}

}  // namespace
}  // namespace troupe
