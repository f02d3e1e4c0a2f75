#include "load/load_client.h"

#include <dirent.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/base/check.h"
#include "core/base/fd.h"
#include "core/net/address.h"
#include "core/net/socket.h"
#include "gtest/gtest.h"
#include "load/hdr_output.h"
#include "load/report.h"

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
//   close_at:   closes a connection once it has received this many bytes;
//   stall_at:   once, when any connection has received this many bytes,
//               stops serving everyone for `stall` (a GC pause, say).
// And end connections the ways a drained or failing node does (offsets
// count from each connection's start, so every new connection gets them
// again):
//   fin_at:     once a connection has received this many bytes, echoes what
//               it read, sends its FIN (shutdown SHUT_WR), then reads and
//               discards until the client's FIN and closes: the flush, FIN
//               and linger of a draining server (troupe's CloseAfterFlush);
//   reset_at:   once a connection has received this many bytes, closes it
//               with SO_LINGER 0: a reset, as from a crashed node;
//   drop_at:    does not echo the `drop_length` bytes from this offset on
//               (-1: none after it), but echoes the others.
struct EchoFaults {
  int64_t corrupt_at = -1;
  int64_t close_at = -1;
  int64_t stall_at = -1;
  absl::Duration stall = absl::ZeroDuration();
  int64_t fin_at = -1;
  int64_t reset_at = -1;
  int64_t drop_at = -1;
  int64_t drop_length = -1;
};

class TestEchoServer {
 public:
  explicit TestEchoServer(EchoFaults faults = {}) : faults_(faults) {
    // gtest's ASSERT_* cannot be used in a constructor; a broken setup aborts.
    absl::StatusOr<Fd> listener = ListenTcp(*Address::FromHostPort("127.0.0.1", 0));
    TROUPE_CHECK(listener.ok(), "listen on 127.0.0.1:0");
    listener_ = *std::move(listener);
    port_ = LocalAddress(listener_.get())->port();
    stop_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    TROUPE_CHECK(stop_.valid(), "eventfd");
    wake_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    TROUPE_CHECK(wake_.valid(), "eventfd");
    thread_ = std::thread([this] { Loop(); });
  }

  ~TestEchoServer() {
    const uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
    thread_.join();
  }

  Address address() const { return *Address::FromHostPort("127.0.0.1", port_); }

  // The peer hosts of every connection accepted so far.
  std::set<std::string> peer_hosts() {
    std::lock_guard<std::mutex> lock(mu_);
    return peer_hosts_;
  }

  // Connections accepted so far.
  int accepted() {
    std::lock_guard<std::mutex> lock(mu_);
    return accepted_;
  }

  // What a node does when it is drained: stops listening, so that connects
  // to the port are refused, and closes every connection as fin_at does
  // (echoes what it read, FIN, discards the rest). Stopping first means no
  // connection can be waiting in the accept queue, which closing the
  // listener would reset. Returns once the server thread has done it.
  void StopAndDrain() { SetListening(false); }
  // Listens again on the same port: the node is back.
  void ListenAgain() { SetListening(true); }

 private:
  struct Peer {
    Fd fd;
    int64_t offset = 0;      // Stream bytes received so far.
    std::string pending;     // Echo bytes the kernel has not taken yet.
    bool finishing = false;  // fin_at reached: FIN once pending is sent.
    bool fin_sent = false;   // Reads only to discard, until the peer's FIN.
  };

  void SetListening(bool on) {
    std::unique_lock<std::mutex> lock(mu_);
    want_listening_ = on;
    const uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof(one));
    listening_changed_.wait(lock, [&] { return listening_ == on; });
  }

  // On the server thread, when SetListening asks. True when it stopped
  // listening, so that the caller drains the connections.
  bool ApplyListening() {
    uint64_t n = 0;
    (void)!::read(wake_.get(), &n, sizeof(n));
    std::lock_guard<std::mutex> lock(mu_);
    if (want_listening_ == listening_) return false;
    if (want_listening_) {
      TROUPE_CHECK(::listen(listener_.get(), SOMAXCONN) == 0, "listen again");
    } else {
      // A socket bound to the port explicitly and not listening: connects
      // are refused, and the port stays ours (shutting a listener bound to
      // port 0 down would give its port back to the kernel).
      listener_.Reset();
      Fd bound(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      TROUPE_CHECK(bound.valid(), "socket");
      const int one = 1;
      ::setsockopt(bound.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      const Address here = address();
      TROUPE_CHECK(::bind(bound.get(), here.sockaddr_ptr(), here.length()) == 0,
                   "bind the test server's port again");
      listener_ = std::move(bound);
    }
    listening_ = want_listening_;
    listening_changed_.notify_all();
    return !listening_;
  }

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
      fds.push_back({wake_.get(), POLLIN, 0});
      // Not listening: -1, which poll() skips (a bound socket that does not
      // listen would report POLLHUP for ever).
      fds.push_back({listening_ ? listener_.get() : -1, POLLIN, 0});
      for (auto& p : peers) {
        short events = p->pending.size() < kMaxPending ? POLLIN : 0;
        if (!p->pending.empty()) events |= POLLOUT;
        fds.push_back({p->fd.get(), events, 0});
      }
      if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return;
      if (fds[0].revents != 0) return;
      if (fds[1].revents != 0 && ApplyListening()) {
        for (auto& p : peers) p->finishing = true;
      }
      if (fds[2].revents != 0 && listening_) {
        for (;;) {
          sockaddr_storage from{};
          socklen_t from_len = sizeof(from);
          const int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&from), &from_len,
                                   SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          {
            std::lock_guard<std::mutex> lock(mu_);
            peer_hosts_.insert(
                Address::FromSockaddr(reinterpret_cast<sockaddr*>(&from), from_len).HostString());
            ++accepted_;
          }
          auto peer = std::make_unique<Peer>();
          peer->fd = Fd(fd);
          peers.push_back(std::move(peer));
        }
      }
      constexpr size_t kFirstPeer = 3;
      for (size_t i = 0; i + kFirstPeer < fds.size(); ++i) {
        Peer& p = *peers[i];
        const short revents = fds[i + kFirstPeer].revents;
        bool done = false;
        if (revents & (POLLIN | POLLHUP | POLLERR)) {
          const ssize_t n = ::recv(p.fd.get(), buffer, sizeof(buffer), 0);
          if (n > 0 && p.finishing) {
            // Draining: what arrives after fin_at is read only to be
            // discarded, as a draining server does.
          } else if (n > 0) {
            const int64_t corrupt = faults_.corrupt_at;
            if (corrupt >= p.offset && corrupt < p.offset + n) {
              buffer[corrupt - p.offset] ^= 0x01;
            }
            if (!stalled_ && faults_.stall_at >= 0 && p.offset + n > faults_.stall_at) {
              stalled_ = true;
              // The fault itself: this thread serves nobody meanwhile.
              absl::SleepFor(faults_.stall);
            }
            AppendEcho(p, buffer, n);
            p.offset += n;
            if (faults_.close_at >= 0 && p.offset >= faults_.close_at) done = true;
            if (faults_.fin_at >= 0 && p.offset >= faults_.fin_at) p.finishing = true;
            if (faults_.reset_at >= 0 && p.offset >= faults_.reset_at) {
              const linger abort{.l_onoff = 1, .l_linger = 0};
              ::setsockopt(p.fd.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
              done = true;
            }
          } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            done = true;
          }
        }
        if (!done && !p.pending.empty()) {
          const ssize_t n = ::send(p.fd.get(), p.pending.data(), p.pending.size(), MSG_NOSIGNAL);
          if (n > 0) {
            p.pending.erase(0, static_cast<size_t>(n));
          } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            done = true;
          }
        }
        if (!done && p.finishing && !p.fin_sent && p.pending.empty()) {
          ::shutdown(p.fd.get(), SHUT_WR);
          p.fin_sent = true;
        }
        if (done) p.fd.Reset();
      }
      std::erase_if(peers, [](const auto& p) { return !p->fd.valid(); });
    }
  }

  // Queues the echo of `n` bytes read at `p.offset`, but for drop_at's.
  void AppendEcho(Peer& p, const char* data, ssize_t n) {
    if (faults_.drop_at < 0) {
      p.pending.append(data, static_cast<size_t>(n));
      return;
    }
    const int64_t drop_end =
        faults_.drop_length < 0 ? INT64_MAX : faults_.drop_at + faults_.drop_length;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t at = p.offset + i;
      if (faults_.drop_at >= 0 && at >= faults_.drop_at && at < drop_end) continue;
      p.pending.push_back(data[i]);
    }
  }

  const EchoFaults faults_;
  bool stalled_ = false;  // Server thread only.
  std::mutex mu_;
  std::condition_variable listening_changed_;
  std::set<std::string> peer_hosts_;  // Guarded by mu_.
  int accepted_ = 0;                  // Guarded by mu_.
  bool want_listening_ = true;        // Guarded by mu_.
  // Written by the server thread under mu_; read there without it.
  bool listening_ = true;
  Fd listener_;  // Server thread only, once it runs.
  Fd stop_;
  Fd wake_;
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
  EXPECT_TRUE(absl::StrContains(report->first_errors[0], "echo mismatch at stream offset 1000"))
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
  EXPECT_TRUE(absl::StrContains(report->first_errors[0], "lost")) << report->first_errors[0];
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
  EXPECT_TRUE(absl::StrContains(report.status().message(), options.target.ToString()))
      << report.status();
  EXPECT_TRUE(absl::StrContains(report.status().message(), "refused")) << report.status();
}

TEST(LoadClientTest, InvalidOptionsAreRejectedBeforeConnecting) {
  LoadOptions good = ShortRun(*Address::FromHostPort("127.0.0.1", 9));
  EXPECT_TRUE(ValidateLoadOptions(good).ok());
  auto expect_invalid = [&](auto mutate) {
    LoadOptions o = good;
    mutate(o);
    absl::StatusOr<LoadReport> report = RunLoad(o);
    EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument) << report.status();
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
      if (stack.empty() && json.find_first_not_of("\n", i + 1) != std::string::npos) {
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
        "\"messages\":", "\"messages_per_s\":", "\"mib_per_s\":", "\"latency_us\":{\"p50\":",
        "\"p99_9\":", "\"errors\":{\"total\":0", "\"ok\":true"}) {
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
  EXPECT_TRUE(absl::StrContains(json, R"("quote \" backslash \\ newline \n tab \t bell \u0007")"))
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

// A minimal JSON reader for the reports: objects, arrays, strings (with the
// escapes the writer uses), numbers, true/false/null. It flattens the value
// into "a.b" -> text (strings unquoted and unescaped; arrays as
// "[n]" plus "a.b.0", "a.b.1", ...). Returns false on anything malformed.
class FlatJson {
 public:
  static bool Parse(const std::string& text, std::map<std::string, std::string>* out) {
    FlatJson p(text, out);
    p.SkipSpace();
    if (!p.Value("")) return false;
    p.SkipSpace();
    return p.at_ == text.size();
  }

 private:
  FlatJson(const std::string& text, std::map<std::string, std::string>* out)
      : text_(text), out_(*out) {}

  void SkipSpace() {
    while (at_ < text_.size() && std::strchr(" \t\r\n", text_[at_]) != nullptr) {
      ++at_;
    }
  }
  bool Eat(char c) {
    SkipSpace();
    if (at_ < text_.size() && text_[at_] == c) {
      ++at_;
      return true;
    }
    return false;
  }
  static std::string Join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }
  bool String(std::string* s) {
    if (!Eat('"')) return false;
    while (at_ < text_.size()) {
      const char c = text_[at_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        s->push_back(c);
        continue;
      }
      if (at_ >= text_.size()) return false;
      const char e = text_[at_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          s->push_back(e);
          break;
        case 'n':
          s->push_back('\n');
          break;
        case 'r':
          s->push_back('\r');
          break;
        case 't':
          s->push_back('\t');
          break;
        case 'b':
          s->push_back('\b');
          break;
        case 'f':
          s->push_back('\f');
          break;
        case 'u': {
          uint32_t code = 0;
          if (at_ + 4 > text_.size() || !absl::SimpleHexAtoi(text_.substr(at_, 4), &code) ||
              code > 0x7f) {
            return false;  // The writer escapes only control characters.
          }
          s->push_back(static_cast<char>(code));
          at_ += 4;
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  bool Value(const std::string& path) {
    SkipSpace();
    if (at_ >= text_.size()) return false;
    const char c = text_[at_];
    if (c == '{') {
      ++at_;
      if (Eat('}')) return true;
      do {
        std::string key;
        if (!String(&key) || !Eat(':') || !Value(Join(path, key))) return false;
      } while (Eat(','));
      return Eat('}');
    }
    if (c == '[') {
      ++at_;
      int n = 0;
      if (!Eat(']')) {
        do {
          if (!Value(Join(path, std::to_string(n++)))) return false;
        } while (Eat(','));
        if (!Eat(']')) return false;
      }
      out_[path] = "[" + std::to_string(n) + "]";
      return true;
    }
    if (c == '"') {
      std::string s;
      if (!String(&s)) return false;
      out_[path] = s;
      return true;
    }
    const size_t start = at_;
    while (at_ < text_.size() && std::strchr("{}[],: \t\r\n\"", text_[at_]) == nullptr) {
      ++at_;
    }
    const std::string word = text_.substr(start, at_ - start);
    double number = 0;
    if (word != "true" && word != "false" && word != "null" && !absl::SimpleAtod(word, &number)) {
      return false;
    }
    out_[path] = word;
    return true;
  }

  const std::string& text_;
  std::map<std::string, std::string>& out_;
  size_t at_ = 0;
};

// The value after `label` on the text report's line starting with `line`.
std::string TextValue(const std::string& text, absl::string_view line, absl::string_view label) {
  for (absl::string_view l : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(l, line)) continue;
    const size_t at = l.find(label);
    if (at == absl::string_view::npos) return "";
    absl::string_view rest = l.substr(at + label.size());
    return std::string(rest.substr(0, rest.find_first_of(" )")));
  }
  return "";
}

TEST(LoadClientTest, JsonParsesAndMatchesTheTextReport) {
  TestEchoServer server;
  LoadOptions options = ShortRun(server.address());
  options.duration = absl::Milliseconds(300);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  const std::string json = FormatReportJson(*report);
  const std::string text = FormatReportText(*report);
  std::map<std::string, std::string> v;
  ASSERT_TRUE(FlatJson::Parse(json, &v)) << json;
  EXPECT_EQ(v["target"], report->target);
  EXPECT_EQ(v["mode"], "closed");
  EXPECT_EQ(v["connections.requested"], "4");
  EXPECT_EQ(v["connections.established"], "4");
  EXPECT_EQ(v["errors.total"], "0");
  EXPECT_EQ(v["errors.first"], "[0]");
  EXPECT_EQ(v["ok"], "true");
  EXPECT_EQ(v["latency_us.count"], v["messages"]);
  // The same numbers as the text report, to the digits both print.
  EXPECT_EQ(v["messages"], TextValue(text, "messages", "messages      "));
  EXPECT_EQ(v["messages_per_s"], TextValue(text, "messages", "("));
  EXPECT_EQ(v["latency_us.p50"], TextValue(text, "latency", "p50 "));
  EXPECT_EQ(v["latency_us.p90"], TextValue(text, "latency", "p90 "));
  EXPECT_EQ(v["latency_us.p99"], TextValue(text, "latency", "p99 "));
  EXPECT_EQ(v["latency_us.p99_9"], TextValue(text, "latency", "p99.9 "));
  EXPECT_EQ(v["latency_us.max"], TextValue(text, "latency", "max "));
  EXPECT_EQ(v["latency_us.mean"], TextValue(text, "latency", "mean "));
  double mib_json = 0;
  double mib_text = 0;
  ASSERT_TRUE(absl::SimpleAtod(v["mib_per_s"], &mib_json));
  ASSERT_TRUE(absl::SimpleAtod(TextValue(text, "throughput", "throughput    "), &mib_text));
  EXPECT_NEAR(mib_json, mib_text, 0.006);
}

TEST(LoadClientTest, CsvHasTheJsonFieldsFlattened) {
  LoadReport report;
  report.target = "127.0.0.1:1";
  report.measured = absl::Seconds(1);
  report.messages = 3;
  report.latency_ns.Record(2000);
  report.connections_lost = 1;
  report.first_errors = {"a, \"quoted\" error", "second"};
  std::map<std::string, std::string> v;
  ASSERT_TRUE(FlatJson::Parse(FormatReportJson(report), &v));
  const std::vector<std::string> lines = absl::StrSplit(FormatReportCsv(report), '\n');
  ASSERT_EQ(lines.size(), 3u);  // Header, values, and "" after the last \n.
  EXPECT_EQ(lines[2], "");
  const std::vector<std::string> names = absl::StrSplit(lines[0], ',');
  // The values line is plain CSV but for the one quoted field, errors_first.
  const std::string quoted = R"("a, ""quoted"" error | second")";
  const size_t at = lines[1].find(quoted);
  ASSERT_NE(at, std::string::npos) << lines[1];
  std::string values_line = lines[1];
  values_line.replace(at, quoted.size(), "ERRORS");
  const std::vector<std::string> values = absl::StrSplit(values_line, ',');
  ASSERT_EQ(names.size(), values.size());
  size_t compared = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == "errors_first") {
      EXPECT_EQ(values[i], "ERRORS");
      continue;
    }
    // An array in JSON (empty here: a hand-made report measured no thread),
    // its values joined by ' ' in CSV.
    if (names[i] == "client_thread_cpu") {
      EXPECT_EQ(values[i], "");
      continue;
    }
    std::string key = names[i];
    // JSON nests these objects; CSV joins the names with '_'.
    for (const char* object : {"connections_", "latency_us_", "errors_", "latency_actual_us_",
                               "client_", "send_lag_us_"}) {
      if (absl::StartsWith(key, object)) {
        const size_t len = std::strlen(object);
        key = key.substr(0, len - 1) + "." + key.substr(len);
      }
    }
    ASSERT_TRUE(v.count(key)) << key;
    EXPECT_EQ(values[i], v[key]) << key;
    ++compared;
  }
  // Every JSON field but errors.first and client.thread_cpu and their
  // elements.
  EXPECT_EQ(compared + 2 + report.first_errors.size(), v.size());
}

TEST(LoadClientTest, OpenLoopKeepsToTheRate) {
  TestEchoServer server;
  LoadOptions options = ShortRun(server.address());
  options.rate = 2000;
  options.pipeline = 4;
  options.warmup = absl::ZeroDuration();
  options.duration = absl::Seconds(1);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << FormatReportText(*report);
  // Never more than the schedule (plus a message per connection for the
  // schedule's rounding); well below the closed loop's tens of thousands.
  EXPECT_LE(report->messages, 2000u + 4u);
  EXPECT_GE(report->messages, 1000u);
  EXPECT_TRUE(absl::StrContains(FormatReportText(*report), "open loop"));
}

TEST(LoadClientTest, OpenLoopChargesAServerStallToEveryMessageDueInIt) {
  // The server stops for 400 ms a tenth of a second into a one-second run.
  // Closed loop, each connection's one message waits it out and nothing else
  // is sent, so only 4 of thousands of messages look slow. Open loop, every
  // message due during the stall counts from when it was due: about 40%.
  const absl::Duration stall = absl::Milliseconds(400);
  auto p90 = [&](double rate) {
    TestEchoServer server({.stall_at = 100 * 200, .stall = stall});
    LoadOptions options = ShortRun(server.address());
    options.message_size = 100;
    options.pipeline = 1;
    options.rate = rate;
    options.warmup = absl::ZeroDuration();
    options.duration = absl::Seconds(1);
    absl::StatusOr<LoadReport> report = RunLoad(options);
    EXPECT_TRUE(report.ok()) << report.status();
    if (!report.ok()) return absl::ZeroDuration();
    EXPECT_TRUE(report->ok()) << FormatReportText(*report);
    return absl::Nanoseconds(report->latency_ns.ValueAtPercentile(90));
  };
  EXPECT_LT(p90(0), stall / 4);
  EXPECT_GT(p90(2000), stall / 4);
}

TEST(LoadClientTest, ScriptModeSendsEachMessageOnceAndVerifiesIt) {
  TestEchoServer server;
  LoadOptions options = ShortRun(server.address());
  options.connections = 5;
  options.pipeline = 1;
  options.messages = {"Message 1 from client.", "Message 2 from client.",
                      std::string(100 * 1024, 'x')};
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << FormatReportText(*report);
  EXPECT_EQ(report->messages, 15u);
  EXPECT_EQ(report->latency_ns.count(), 15u);
  EXPECT_EQ(report->bytes, 5u * (22 + 22 + 100 * 1024));
  EXPECT_EQ(report->script_messages, 3u);
  EXPECT_LT(report->measured, absl::Seconds(5));  // Ends when all are back.
  EXPECT_TRUE(absl::StrContains(FormatReportJson(*report), "\"mode\":\"script\""));
}

TEST(LoadClientTest, ScriptModeCatchesACorruptedEcho) {
  TestEchoServer server({.corrupt_at = 30});
  LoadOptions options = ShortRun(server.address());
  options.connections = 2;
  options.pipeline = 1;  // So the first echo comes back on its own.
  options.messages = {"Message 1 from client.", "Message 2 from client."};
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->verification_errors, 2u);
  EXPECT_EQ(report->messages, 2u);  // The first message of each came back.
  ASSERT_FALSE(report->first_errors.empty());
  EXPECT_TRUE(absl::StrContains(report->first_errors[0], "echo mismatch at stream offset 30"))
      << report->first_errors[0];
}

TEST(LoadClientTest, ScriptModeTimesOutOnASilentServer) {
  // Listens, so the handshakes complete, but never reads or echoes.
  absl::StatusOr<Fd> silent = ListenTcp(*Address::FromHostPort("127.0.0.1", 0));
  ASSERT_TRUE(silent.ok()) << silent.status();
  LoadOptions options = ShortRun(*LocalAddress(silent->get()));
  options.connections = 3;
  options.messages = {"hello"};
  options.script_timeout = absl::Milliseconds(300);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->connections_timed_out, 3u);
  // Timed out, so not also incomplete; and nothing was measured.
  EXPECT_EQ(report->connections_incomplete, 0u);
  EXPECT_EQ(report->connections_stalled, 0u);
  EXPECT_TRUE(report->no_messages);
  EXPECT_EQ(report->error_count(), 4u);
  EXPECT_TRUE(absl::StrContains(FormatReportText(*report), "timed out 3"))
      << FormatReportText(*report);
}

// A listener that completes handshakes (the kernel does) and buffers what
// arrives, but never accepts: no byte ever comes back.
class SilentServer {
 public:
  SilentServer() {
    absl::StatusOr<Fd> listener = ListenTcp(*Address::FromHostPort("127.0.0.1", 0));
    TROUPE_CHECK(listener.ok(), "listen on 127.0.0.1:0");
    listener_ = *std::move(listener);
  }
  Address address() const { return *LocalAddress(listener_.get()); }
  // Accepts every connection queued so far and resets it (close() with
  // unread bytes sends a reset). Returns how many.
  int ResetAll() {
    int n = 0;
    for (;;) {
      pollfd p{listener_.get(), POLLIN, 0};
      if (::poll(&p, 1, 0) != 1) return n;
      const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return n;
      ::close(fd);
      ++n;
    }
  }
  // Accepts every connection queued so far and sends its FIN, unread bytes
  // and all: a clean close with every echo still owed. Returns how many.
  int FinAll() {
    int n = 0;
    for (;;) {
      pollfd p{listener_.get(), POLLIN, 0};
      if (::poll(&p, 1, 0) != 1) return n;
      Fd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!fd.valid()) return n;
      ::shutdown(fd.get(), SHUT_WR);
      finished_.push_back(std::move(fd));
      ++n;
    }
  }

 private:
  Fd listener_;
  std::vector<Fd> finished_;  // Closed with the server.
};

TEST(LoadClientTest, SilentServerIsStalledAndMeasuresNothing) {
  SilentServer silent;
  LoadOptions options = ShortRun(silent.address());
  options.connections = 3;
  options.warmup = absl::ZeroDuration();
  options.stall_timeout = absl::Milliseconds(200);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->connections_stalled, 3u);
  EXPECT_EQ(report->connections_incomplete, 0u);  // Closed once stalled.
  EXPECT_EQ(report->connections_lost, 0u);
  EXPECT_EQ(report->messages, 0u);
  EXPECT_TRUE(report->no_messages);
  EXPECT_EQ(report->error_count(), 4u);
  // Every connection closed, so the run ends early rather than waiting.
  EXPECT_LT(report->measured, options.duration);
  const std::string text = FormatReportText(*report);
  EXPECT_TRUE(absl::StrContains(text, "stalled 3, no messages completed")) << text;
  EXPECT_TRUE(absl::StrContains(text, "no byte received in 200ms with 0 of 800 sent bytes echoed"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "no message completed")) << text;
}

TEST(LoadClientTest, WithoutAStallCheckLeftoversAreIncompleteAfterTheDrain) {
  for (const absl::Duration off : {absl::ZeroDuration(), absl::InfiniteDuration()}) {
    SilentServer silent;
    LoadOptions options = ShortRun(silent.address());
    options.connections = 2;
    options.warmup = absl::ZeroDuration();
    options.duration = absl::Milliseconds(200);
    options.stall_timeout = off;
    absl::StatusOr<LoadReport> report = RunLoad(options);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->connections_stalled, 0u) << off;
    EXPECT_EQ(report->connections_incomplete, 2u) << off;
    EXPECT_TRUE(report->no_messages) << off;
    ASSERT_EQ(report->first_errors.size(), 3u) << FormatReportText(*report);
    EXPECT_EQ(report->first_errors[0], "no message completed in the measured window");
    EXPECT_TRUE(
        absl::StrContains(report->first_errors[1], "incomplete: 0 of 800 sent bytes echoed"))
        << report->first_errors[1];
  }
}

TEST(LoadClientTest, PeerClosingDuringTheDrainWithEchoesOwedIsIncomplete) {
  SilentServer silent;
  LoadOptions options = ShortRun(silent.address());
  options.connections = 2;
  options.threads = 1;
  options.warmup = absl::ZeroDuration();
  options.duration = absl::Milliseconds(200);
  options.stall_timeout = absl::ZeroDuration();  // The drain: 1 s.
  options.progress_interval = absl::Milliseconds(50);
  // The second draining snapshot is 50 ms or more into the drain (which the
  // worker entered at the same instant), and long before its end.
  int draining_seen = 0;
  int reset = 0;
  options.on_progress = [&](const LoadProgress& p) {
    if (p.phase != LoadProgress::Phase::kDraining) return;
    if (++draining_seen == 2) reset = silent.ResetAll();
  };
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(reset, 2);
  EXPECT_EQ(report->connections_lost, 0u) << FormatReportText(*report);
  EXPECT_EQ(report->connections_incomplete, 2u) << FormatReportText(*report);
  ASSERT_GE(report->first_errors.size(), 2u);
  EXPECT_TRUE(
      absl::StrContains(report->first_errors[1], "incomplete: 0 of 800 sent bytes echoed (recv: "))
      << report->first_errors[1];
}

TEST(LoadClientTest, BlockedSendCountsAsStalled) {
  // 64 MiB is more than the loopback's send and receive buffers together
  // hold, so most of the message is never taken by the kernel.
  SilentServer silent;
  LoadOptions options = ShortRun(silent.address());
  options.connections = 1;
  options.threads = 1;
  options.pipeline = 1;
  options.message_size = size_t{64} << 20;
  options.warmup = absl::ZeroDuration();
  options.stall_timeout = absl::Milliseconds(200);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->connections_stalled, 1u) << FormatReportText(*report);
  ASSERT_GE(report->first_errors.size(), 2u);
  EXPECT_TRUE(absl::StrContains(report->first_errors[1], "more the kernel would not take"))
      << report->first_errors[1];
}

TEST(LoadClientTest, OpenLoopIdleConnectionIsNotStalled) {
  // Two messages a second on one connection: it owes nothing for ~500 ms
  // at a time, longer than the stall timeout, and must not count as stalled.
  TestEchoServer server;
  LoadOptions options = ShortRun(server.address());
  options.connections = 1;
  options.threads = 1;
  options.pipeline = 1;
  options.rate = 2;
  options.warmup = absl::ZeroDuration();
  options.duration = absl::Milliseconds(1200);
  options.stall_timeout = absl::Milliseconds(200);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << FormatReportText(*report);
  EXPECT_EQ(report->connections_stalled, 0u);
  EXPECT_GE(report->messages, 2u);
}

TEST(LoadClientTest, EveryErrorKindFailsTheReport) {
  const std::vector<void (*)(LoadReport&)> kinds = {
      [](LoadReport& r) { r.connections_failed = 1; },
      [](LoadReport& r) { r.verification_errors = 1; },
      [](LoadReport& r) { r.connections_lost = 1; },
      [](LoadReport& r) { r.connections_timed_out = 1; },
      [](LoadReport& r) { r.connections_incomplete = 1; },
      [](LoadReport& r) { r.connections_stalled = 1; },
      [](LoadReport& r) { r.no_messages = true; },
  };
  EXPECT_TRUE(LoadReport().ok());
  for (size_t i = 0; i < kinds.size(); ++i) {
    LoadReport r;
    kinds[i](r);
    EXPECT_EQ(r.error_count(), 1u) << "kind " << i;
    EXPECT_FALSE(r.ok()) << "kind " << i;
  }
  LoadReport all;
  for (auto set : kinds) set(all);
  EXPECT_EQ(all.error_count(), kinds.size());
}

TEST(LoadClientTest, NewErrorKindsAppearInEveryFormat) {
  LoadReport report;
  report.target = "127.0.0.1:1";
  report.connections_lost = 1;
  report.connections_incomplete = 2;
  report.connections_stalled = 3;
  report.no_messages = true;
  EXPECT_EQ(report.error_count(), 7u);

  const std::string text = FormatReportText(report);
  EXPECT_TRUE(absl::StrContains(text,
                                "errors        7 (connect 0, verification 0, lost 1, incomplete 2, "
                                "stalled 3, no messages completed)\n"))
      << text;
  EXPECT_EQ(FormatErrorKinds(report),
            "connect 0, verification 0, lost 1, incomplete 2, stalled 3, no "
            "messages completed");
  // Kinds with nothing to report stay out of the line.
  LoadReport stalled_only;
  stalled_only.connections_stalled = 1;
  EXPECT_EQ(FormatErrorKinds(stalled_only), "connect 0, verification 0, lost 0, stalled 1");

  std::map<std::string, std::string> v;
  const std::string json = FormatReportJson(report);
  ASSERT_TRUE(FlatJson::Parse(json, &v)) << json;
  EXPECT_EQ(v["errors.total"], "7");
  EXPECT_EQ(v["errors.incomplete"], "2");
  EXPECT_EQ(v["errors.stalled"], "3");
  EXPECT_EQ(v["errors.no_messages"], "1");
  EXPECT_EQ(v["errors.timed_out"], "0");
  EXPECT_EQ(v["ok"], "false");
  // New keys go at the end of their object.
  EXPECT_TRUE(absl::StrContains(json,
                                "\"timed_out\":0,\"incomplete\":2,\"stalled\":3,"
                                "\"no_messages\":1},\"ok\":false"))
      << json;

  const std::vector<std::string> lines = absl::StrSplit(FormatReportCsv(report), '\n');
  ASSERT_GE(lines.size(), 2u);
  const std::vector<std::string> names = absl::StrSplit(lines[0], ',');
  const std::vector<std::string> values = absl::StrSplit(lines[1], ',');
  ASSERT_EQ(names.size(), values.size());
  std::map<std::string, std::string> csv;
  for (size_t i = 0; i < names.size(); ++i) csv[names[i]] = values[i];
  EXPECT_EQ(csv["errors_total"], "7");
  EXPECT_EQ(csv["errors_incomplete"], "2");
  EXPECT_EQ(csv["errors_stalled"], "3");
  EXPECT_EQ(csv["errors_no_messages"], "1");
  EXPECT_EQ(csv["ok"], "false");

  // A clean report still says "none" and counts zeros.
  LoadReport clean;
  clean.messages = 1;
  EXPECT_TRUE(absl::StrContains(FormatReportText(clean), "errors        none"));
  EXPECT_TRUE(absl::StrContains(FormatReportJson(clean),
                                "\"incomplete\":0,\"stalled\":0,"
                                "\"no_messages\":0}"));
}

TEST(LoadClientTest, SourceAddressesAreUsedRoundRobin) {
  TestEchoServer server;
  LoadOptions options = ShortRun(server.address());
  options.connections = 6;
  options.source_addresses = 3;
  options.duration = absl::Milliseconds(200);
  options.warmup = absl::ZeroDuration();
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << FormatReportText(*report);
  EXPECT_EQ(report->source_addresses, 3);
  EXPECT_EQ(server.peer_hosts(), (std::set<std::string>{"127.0.0.1", "127.0.0.2", "127.0.0.3"}));
}

TEST(LoadClientTest, AutomaticSourceAddressesAreOneForFewConnections) {
  TestEchoServer server;
  LoadOptions options = ShortRun(server.address());
  options.duration = absl::Milliseconds(100);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->source_addresses, 1);
}

TEST(LoadClientTest, SeveralSourceAddressesNeedALoopbackTarget) {
  LoadOptions options = ShortRun(*Address::FromHostPort("192.0.2.1", 9));
  options.source_addresses = 2;
  absl::StatusOr<LoadReport> report = RunLoad(options);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument) << report.status();
}

TEST(LoadClientTest, ProgressIsReportedOnTheCallingThread) {
  TestEchoServer server;
  LoadOptions options = ShortRun(server.address());
  options.warmup = absl::Milliseconds(300);
  options.duration = absl::Milliseconds(600);
  options.progress_interval = absl::Milliseconds(100);
  std::vector<LoadProgress> seen;  // Appended to by this thread only.
  const std::thread::id caller = std::this_thread::get_id();
  options.on_progress = [&](const LoadProgress& p) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    seen.push_back(p);
  };
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_GE(seen.size(), 4u);
  bool warmup = false;
  bool measuring = false;
  uint64_t messages = 0;
  for (const LoadProgress& p : seen) {
    warmup |= p.phase == LoadProgress::Phase::kWarmup;
    if (p.phase == LoadProgress::Phase::kMeasuring) {
      measuring = true;
      EXPECT_EQ(p.total, options.duration);
      EXPECT_GT(p.interval_messages, 0u);
      EXPECT_GT(p.interval_p99_ns, 0u);
      EXPECT_EQ(p.connections_established, 4);
      EXPECT_EQ(p.errors, 0u);
    }
    messages += p.interval_messages;
  }
  EXPECT_TRUE(warmup);
  EXPECT_TRUE(measuring);
  // The intervals add up to what completed (warmup too) up to the last one.
  EXPECT_EQ(messages, seen.back().messages_completed);
  const std::string line = FormatProgressLine(seen.back());
  EXPECT_TRUE(absl::StrContains(line, "msg/s")) << line;
  EXPECT_TRUE(absl::StrContains(line, "errors 0")) << line;
}

TEST(LoadClientTest, ProgressLineNamesThePhase) {
  LoadProgress p;
  p.phase = LoadProgress::Phase::kConnecting;
  p.connections_requested = 15000;
  p.connections_established = 8123;
  EXPECT_TRUE(absl::StrContains(FormatProgressLine(p), "8123/15000")) << FormatProgressLine(p);
  p.phase = LoadProgress::Phase::kMeasuring;
  p.elapsed = absl::Milliseconds(3500);
  p.total = absl::Seconds(10);
  p.interval = absl::Milliseconds(500);
  p.interval_messages = 1000;
  p.interval_p99_ns = 812'300;
  EXPECT_EQ(FormatProgressLine(p), "3.5s/10s  2000 msg/s  p99 812.3us  errors 0  conns 8123");
}

TEST(LoadClientTest, PercentileDistributionAgreesWithTheHistogram) {
  TestEchoServer server;
  LoadOptions options = ShortRun(server.address());
  options.duration = absl::Milliseconds(300);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  const LoadReport& r = *report;
  uint64_t total = 0;
  for (uint64_t c : r.latency_buckets) total += c;
  EXPECT_EQ(total, r.latency_ns.count());  // Warmup left out of both.
  const std::string text = FormatPercentileDistribution(r);
  const std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  ASSERT_GT(lines.size(), 5u);
  EXPECT_TRUE(absl::StrContains(lines[0], "Value     Percentile TotalCount 1/(1-Percentile)"));
  // Rows: value, percentile, count so far, 1/(1-p); all non-decreasing.
  double last_value = 0;
  double last_level = -1;
  uint64_t last_count = 0;
  std::string last_row;
  for (size_t i = 1; i < lines.size() && lines[i][0] != '#'; ++i) {
    const std::vector<std::string> cols = absl::StrSplit(lines[i], ' ', absl::SkipEmpty());
    ASSERT_EQ(cols.size(), 4u) << lines[i];
    double value = 0;
    double level = 0;
    uint64_t count = 0;
    ASSERT_TRUE(absl::SimpleAtod(cols[0], &value)) << lines[i];
    ASSERT_TRUE(absl::SimpleAtod(cols[1], &level)) << lines[i];
    ASSERT_TRUE(absl::SimpleAtoi(cols[2], &count)) << lines[i];
    EXPECT_GE(value, last_value);
    EXPECT_GT(level, last_level);
    EXPECT_GE(count, last_count);
    // p50 and p90 rows give the value the report gives.
    if (cols[1] == "0.500000000000" || cols[1] == "0.900000000000") {
      const double p = level * 100;
      EXPECT_NEAR(value, static_cast<double>(r.latency_ns.ValueAtPercentile(p)) / 1000.0, 0.001)
          << lines[i];
    }
    last_value = value;
    last_level = level;
    last_count = count;
    last_row = lines[i];
  }
  EXPECT_TRUE(absl::StrContains(last_row, "1.000000000000")) << last_row;
  EXPECT_TRUE(absl::EndsWith(last_row, "inf")) << last_row;
  EXPECT_EQ(last_count, r.latency_ns.count());
  EXPECT_NEAR(last_value, static_cast<double>(r.latency_ns.max()) / 1000.0, 0.001);
  EXPECT_TRUE(absl::StrContains(
      text, absl::StrCat("Total count    = ", std::string(12 - std::to_string(total).size(), ' '),
                         total)))
      << text;
}

TEST(LoadClientTest, InvalidNewOptionsAreRejected) {
  LoadOptions good = ShortRun(*Address::FromHostPort("127.0.0.1", 9));
  auto expect_invalid = [&](auto mutate) {
    LoadOptions o = good;
    mutate(o);
    EXPECT_EQ(ValidateLoadOptions(o).code(), absl::StatusCode::kInvalidArgument);
  };
  expect_invalid([](LoadOptions& o) { o.rate = -1; });
  expect_invalid([](LoadOptions& o) { o.rate = std::nan(""); });
  expect_invalid([](LoadOptions& o) { o.messages = {"a", ""}; });
  expect_invalid([](LoadOptions& o) {
    o.messages = {"a"};
    o.rate = 10;
  });
  expect_invalid([](LoadOptions& o) {
    o.messages = {"a"};
    o.script_timeout = absl::ZeroDuration();
  });
  expect_invalid([](LoadOptions& o) { o.source_addresses = -1; });
  expect_invalid([](LoadOptions& o) { o.progress_interval = absl::Seconds(-1); });
  expect_invalid([](LoadOptions& o) { o.stall_timeout = absl::Seconds(-1); });
  expect_invalid([](LoadOptions& o) { o.stall_timeout = -absl::InfiniteDuration(); });
  LoadOptions off = good;
  off.stall_timeout = absl::InfiniteDuration();
  EXPECT_TRUE(ValidateLoadOptions(off).ok());
  off.stall_timeout = absl::ZeroDuration();
  EXPECT_TRUE(ValidateLoadOptions(off).ok());
}

// --reconnect: the server ends connections the ways a rolling restart does.

// 200 messages of ShortRun's 100 bytes: a stream ends every few
// milliseconds, dozens of times a run.
constexpr int64_t kStreamBytes = 20'000;
constexpr uint64_t kMessagesPerStream = static_cast<uint64_t>(kStreamBytes) / 100;

LoadOptions ReconnectRun(const Address& target) {
  LoadOptions options = ShortRun(target);
  options.reconnect = true;
  options.warmup = absl::ZeroDuration();
  return options;
}

TEST(LoadClientTest, ReconnectCarriesOnAcrossCleanCloses) {
  TestEchoServer server({.fin_at = kStreamBytes});
  absl::StatusOr<LoadReport> report = RunLoad(ReconnectRun(server.address()));
  ASSERT_TRUE(report.ok()) << report.status();
  const std::string text = FormatReportText(*report);
  EXPECT_TRUE(report->ok()) << text;
  EXPECT_GT(report->reconnections, 0u) << text;
  EXPECT_EQ(report->reconnect_failures, 0u) << text;
  EXPECT_EQ(report->verification_errors, 0u) << text;
  EXPECT_EQ(report->connections_lost, 0u) << text;
  EXPECT_EQ(report->connections_down, 0u) << text;
  // One stream holds 200 messages at most: the run went on past the first.
  EXPECT_GT(report->messages, 2 * 4 * kMessagesPerStream) << text;
  // Closed loop: an echo makes room for the next message at once, so every
  // stream the server closes has messages in flight.
  EXPECT_GE(report->abandoned_messages, report->reconnections) << text;
  EXPECT_TRUE(absl::StrContains(
      text, absl::StrCat("reconnects    ", report->reconnections, ", 0 attempts failed; ")))
      << text;
  // Every connect the client made reached the server: the first four and
  // each reconnection (the server may not have accepted the last few yet).
  EXPECT_LE(server.accepted(), 4 + static_cast<int>(report->reconnections));
}

TEST(LoadClientTest, WithoutReconnectACleanCloseIsLost) {
  TestEchoServer server({.fin_at = kStreamBytes});
  LoadOptions options = ReconnectRun(server.address());
  options.reconnect = false;
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->ok());
  EXPECT_EQ(report->connections_lost, 4u) << FormatReportText(*report);
  EXPECT_EQ(report->reconnections, 0u);
  EXPECT_EQ(report->unanswered_bytes, 0u);
  // Not shown when not asked for.
  EXPECT_FALSE(absl::StrContains(FormatReportText(*report), "reconnects"));
}

TEST(LoadClientTest, ReconnectDoesNotForgiveAReset) {
  TestEchoServer server({.reset_at = kStreamBytes});
  absl::StatusOr<LoadReport> report = RunLoad(ReconnectRun(server.address()));
  ASSERT_TRUE(report.ok()) << report.status();
  const std::string text = FormatReportText(*report);
  EXPECT_FALSE(report->ok()) << text;
  // Each reset is an error, and each costs only its own stream.
  EXPECT_GT(report->connections_lost, 4u) << text;
  EXPECT_GT(report->reconnections, 0u) << text;
  EXPECT_EQ(report->verification_errors, 0u) << text;
  EXPECT_GT(report->messages, 2 * 4 * kMessagesPerStream) << text;
  ASSERT_FALSE(report->first_errors.empty());
  EXPECT_TRUE(absl::StrContains(report->first_errors[0], "lost after")) << text;
}

TEST(LoadClientTest, ReconnectStillCatchesACorruptionBeforeTheClose) {
  // The byte flipped is echoed just before the server's FIN.
  TestEchoServer server({.corrupt_at = kStreamBytes - 50, .fin_at = kStreamBytes});
  absl::StatusOr<LoadReport> report = RunLoad(ReconnectRun(server.address()));
  ASSERT_TRUE(report.ok()) << report.status();
  const std::string text = FormatReportText(*report);
  EXPECT_FALSE(report->ok()) << text;
  // Once per connection, which then stays closed: not reconnected.
  EXPECT_EQ(report->verification_errors, 4u) << text;
  EXPECT_EQ(report->reconnections, 0u) << text;
  EXPECT_EQ(report->connections_lost, 0u) << text;
  ASSERT_FALSE(report->first_errors.empty());
  EXPECT_TRUE(absl::StrContains(report->first_errors[0],
                                absl::StrCat("echo mismatch at stream offset ", kStreamBytes - 50)))
      << text;
}

TEST(LoadClientTest, ReconnectCatchesBytesDroppedBeforeLaterEchoes) {
  // Half of message 50 is dropped, the rest of the stream echoed: the bytes
  // after the gap come back at the wrong offsets.
  TestEchoServer server({.fin_at = kStreamBytes, .drop_at = 5050, .drop_length = 50});
  absl::StatusOr<LoadReport> report = RunLoad(ReconnectRun(server.address()));
  ASSERT_TRUE(report.ok()) << report.status();
  const std::string text = FormatReportText(*report);
  EXPECT_FALSE(report->ok()) << text;
  EXPECT_EQ(report->verification_errors, 4u) << text;
  EXPECT_TRUE(absl::StrContains(text, "echo mismatch at stream offset 5050")) << text;
}

TEST(LoadClientTest, ReconnectCannotTellADroppedTailFromADrain) {
  // The documented blind spot: the server reads message 100 whole, echoes
  // its first half, drops the rest and closes cleanly. Over a raw echo that
  // is indistinguishable from a drain that never read the second half; all
  // the client can do is count it.
  TestEchoServer server({.fin_at = 10'100, .drop_at = 10'050});
  LoadOptions options = ReconnectRun(server.address());
  options.pipeline = 1;  // Message 100 is the only one the server gets.
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  const std::string text = FormatReportText(*report);
  EXPECT_TRUE(report->ok()) << text;
  EXPECT_GT(report->reconnections, 0u) << text;
  // 50 bytes and one message a stream, in the run and in its drain.
  EXPECT_GE(report->unanswered_bytes, 50 * report->reconnections) << text;
  EXPECT_EQ(report->unanswered_bytes % 50, 0u) << text;
  EXPECT_EQ(report->abandoned_messages, report->unanswered_bytes / 50) << text;
}

// Calls `at_snapshot(k)` on the k-th progress snapshot of the measured
// window, every 50 ms.
template <typename F>
void OnMeasuringSnapshots(LoadOptions& options, F at_snapshot) {
  options.progress_interval = absl::Milliseconds(50);
  options.on_progress = [at_snapshot, seen = 0](const LoadProgress& p) mutable {
    if (p.phase == LoadProgress::Phase::kMeasuring) at_snapshot(++seen);
  };
}

TEST(LoadClientTest, ReconnectRidesOutARefusingListener) {
  TestEchoServer server;
  LoadOptions options = ReconnectRun(server.address());
  options.duration = absl::Milliseconds(1500);
  // The node is drained 100 ms in and back 300 ms later.
  OnMeasuringSnapshots(options, [&](int k) {
    if (k == 2) server.StopAndDrain();
    if (k == 8) server.ListenAgain();
  });
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  const std::string text = FormatReportText(*report);
  EXPECT_TRUE(report->ok()) << text;
  EXPECT_GT(report->reconnect_failures, 0u) << text;
  EXPECT_EQ(report->reconnections, 4u) << text;
  EXPECT_EQ(report->connections_down, 0u) << text;
}

TEST(LoadClientTest, ReconnectFailsTheRunWhenTheServerNeverComesBack) {
  TestEchoServer server;
  LoadOptions options = ReconnectRun(server.address());
  options.duration = absl::Milliseconds(500);
  options.stall_timeout = absl::Milliseconds(200);  // The drain: 1 s.
  OnMeasuringSnapshots(options, [&](int k) {
    if (k == 2) server.StopAndDrain();
  });
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  const std::string text = FormatReportText(*report);
  EXPECT_FALSE(report->ok()) << text;
  EXPECT_EQ(report->connections_down, 4u) << text;
  EXPECT_EQ(report->error_count(), 4u) << text;
  EXPECT_EQ(report->reconnections, 0u) << text;
  EXPECT_GT(report->reconnect_failures, 0u) << text;
  EXPECT_TRUE(absl::StrContains(text, "down 4")) << text;
  EXPECT_TRUE(absl::StrContains(text, "down: not open again by the end of the run")) << text;
  EXPECT_TRUE(absl::StrContains(text, "refused")) << text;
}

TEST(LoadClientTest, ReconnectStillCountsStallsAndMovesOn) {
  // A hung node: every connection stalls, is counted, and is opened again,
  // to stall again.
  SilentServer silent;
  LoadOptions options = ReconnectRun(silent.address());
  options.connections = 2;
  options.threads = 1;
  options.stall_timeout = absl::Milliseconds(200);
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  const std::string text = FormatReportText(*report);
  EXPECT_FALSE(report->ok()) << text;
  // About four 200 ms stalls each in the 1 s run; twice each at least.
  EXPECT_GE(report->connections_stalled, 4u) << text;
  EXPECT_GE(report->reconnections, 2u) << text;
  EXPECT_EQ(report->connections_lost, 0u) << text;
}

TEST(LoadClientTest, ReconnectCountsACleanCloseInTheDrainAsUnanswered) {
  // The drain at the end: with reconnect, a clean close is not incomplete
  // (it would be without, see PeerClosingDuringTheDrainWithEchoesOwed...),
  // and the connection is not opened again.
  SilentServer silent;
  LoadOptions options = ReconnectRun(silent.address());
  options.connections = 2;
  options.threads = 1;
  options.duration = absl::Milliseconds(200);
  options.stall_timeout = absl::ZeroDuration();  // The drain: 1 s.
  options.progress_interval = absl::Milliseconds(50);
  int draining_seen = 0;
  int finished = 0;
  options.on_progress = [&](const LoadProgress& p) {
    if (p.phase != LoadProgress::Phase::kDraining) return;
    if (++draining_seen == 2) finished = silent.FinAll();
  };
  absl::StatusOr<LoadReport> report = RunLoad(options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(finished, 2);
  const std::string text = FormatReportText(*report);
  EXPECT_EQ(report->connections_incomplete, 0u) << text;
  EXPECT_EQ(report->connections_lost, 0u) << text;
  EXPECT_EQ(report->reconnections, 0u) << text;
  // Everything each sent: 8 messages of 100 bytes.
  EXPECT_EQ(report->unanswered_bytes, 2u * 800u) << text;
  EXPECT_EQ(report->abandoned_messages, 2u * 8u) << text;
  // The silent server still measured nothing.
  EXPECT_TRUE(report->no_messages);
  EXPECT_EQ(report->error_count(), 1u) << text;
}

TEST(LoadClientTest, ReconnectIsNotForScriptMode) {
  LoadOptions options = ShortRun(*Address::FromHostPort("127.0.0.1", 9));
  options.messages = {"hello"};
  options.reconnect = true;
  EXPECT_EQ(ValidateLoadOptions(options).code(), absl::StatusCode::kInvalidArgument);
  options.messages.clear();
  EXPECT_TRUE(ValidateLoadOptions(options).ok());
}

TEST(LoadClientTest, ReconnectCountsAppearInEveryFormat) {
  LoadReport report;
  report.target = "127.0.0.1:1";
  report.messages = 1;
  report.reconnect = true;
  report.reconnections = 12;
  report.reconnect_failures = 3;
  report.unanswered_bytes = 4096;
  report.abandoned_messages = 8;
  // Not errors.
  EXPECT_TRUE(report.ok());
  const std::string text = FormatReportText(report);
  EXPECT_TRUE(absl::StrContains(
      text,
      "reconnects    12, 3 attempts failed; 4096 sent bytes unanswered, 8 messages "
      "abandoned\n"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "errors        none")) << text;
  const std::string json = FormatReportJson(report);
  EXPECT_TRUE(absl::StrContains(json,
                                "\"script_bytes\":0,\"reconnect\":true,\"reconnections\":12,"
                                "\"reconnect_failures\":3,\"unanswered_bytes\":4096,"
                                "\"abandoned_messages\":8,\"down\":0,"))
      << json;
  std::map<std::string, std::string> v;
  ASSERT_TRUE(FlatJson::Parse(json, &v)) << json;
  const std::vector<std::string> lines = absl::StrSplit(FormatReportCsv(report), '\n');
  ASSERT_GE(lines.size(), 2u);
  EXPECT_TRUE(absl::StrContains(lines[0],
                                ",reconnect,reconnections,reconnect_failures,unanswered_bytes,"
                                "abandoned_messages,down,"))
      << lines[0];
  EXPECT_TRUE(absl::StrContains(lines[1], ",true,12,3,4096,8,0,")) << lines[1];

  // A connection down at the end is an error, in errors.total too.
  report.connections_down = 2;
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.error_count(), 2u);
  EXPECT_EQ(FormatErrorKinds(report), "connect 0, verification 0, lost 0, down 2");
  ASSERT_TRUE(FlatJson::Parse(FormatReportJson(report), &v));
  EXPECT_EQ(v["errors.total"], "2");
  EXPECT_EQ(v["down"], "2");
  EXPECT_EQ(v["ok"], "false");

  LoadProgress p;
  p.phase = LoadProgress::Phase::kMeasuring;
  p.elapsed = absl::Seconds(1);
  p.total = absl::Seconds(10);
  p.interval = absl::Seconds(1);
  p.interval_messages = 100;
  p.connections_established = 4;
  p.reconnect = true;
  p.reconnections = 7;
  p.reconnecting = 2;
  EXPECT_EQ(FormatProgressLine(p),
            "1.0s/10s  100 msg/s  p99 -  errors 0  conns 4  reconnects 7  reconnecting 2");
}

}  // namespace
}  // namespace troupe
