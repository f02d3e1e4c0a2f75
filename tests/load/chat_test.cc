// RunChat (load/chat.h) end to end: against troupe's own chat room in
// process, against echo-cluster --mode chat and raw-epoll-chat as programs,
// and against a small chat server of the test's own that breaks the room
// on purpose (drops, duplicates, reorders or corrupts one line, or never
// delivers anything): each must be caught, and named.

#include "load/chat.h"

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "actors/builtin.h"
#include "core/base/check.h"
#include "core/base/fd.h"
#include "core/net/address.h"
#include "core/net/socket.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "load/chat_report.h"
#include "tests/support/cluster_process.h"
#include "tests/support/start_server.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using ::troupe::testing::BinPath;
using ::troupe::testing::Subprocess;

// Bounds a hang; nothing here measures.
constexpr absl::Duration kTimeout = absl::Seconds(60);

// What the fake server does to the room, once: to the kFaultAt-th chat line
// it delivers to any member.
enum class Fault { kNone, kDrop, kDuplicate, kReorder, kCorrupt, kSilent };
constexpr int kFaultAt = 5;

// A chat room in the protocol of ChatActor (one poll() thread, written
// apart from troupe's and raw-epoll-chat's), which can break it.
class FakeChatServer {
 public:
  explicit FakeChatServer(Fault fault = Fault::kNone) : fault_(fault) {
    absl::StatusOr<Fd> listener = ListenTcp(*Address::FromHostPort("127.0.0.1", 0));
    TROUPE_CHECK(listener.ok(), "listen on 127.0.0.1:0");
    listener_ = *std::move(listener);
    port_ = LocalAddress(listener_.get())->port();
    stop_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    TROUPE_CHECK(stop_.valid(), "eventfd");
    thread_ = std::thread([this] { Loop(); });
  }

  ~FakeChatServer() {
    const uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
    thread_.join();
  }

  Address address() const { return *Address::FromHostPort("127.0.0.1", port_); }
  bool fault_done() const { return fault_done_.load(); }

 private:
  struct Member {
    Fd fd;
    std::string name;
    std::string in;
    std::string out;
  };
  // A line held back for one member until the sender's next line to it.
  struct Held {
    int to = -1;
    int from = -1;
    std::string text;
  };

  void Loop() {
    std::map<int, Member> members;
    Held held;
    for (;;) {
      std::vector<pollfd> fds{{stop_.get(), POLLIN, 0}, {listener_.get(), POLLIN, 0}};
      for (auto& [fd, m] : members) {
        fds.push_back({fd, static_cast<short>(POLLIN | (m.out.empty() ? 0 : POLLOUT)), 0});
      }
      if (::poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[0].revents != 0) return;
      if (fds[1].revents != 0) {
        sockaddr_storage from{};
        socklen_t len = sizeof(from);
        const int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&from), &len,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
          Member& m = members[fd];
          m.fd = Fd(fd);
          m.name = Address::FromSockaddr(reinterpret_cast<sockaddr*>(&from), len).ToString();
        }
      }
      for (size_t i = 2; i < fds.size(); ++i) {
        const int fd = fds[i].fd;
        auto it = members.find(fd);
        if (it == members.end()) continue;
        Member& m = it->second;
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
          char buf[16384];
          const ssize_t r = ::recv(fd, buf, sizeof(buf), 0);
          if (r == 0 || (r < 0 && errno != EAGAIN)) {
            members.erase(it);
            continue;
          }
          if (r > 0) m.in.append(buf, static_cast<size_t>(r));
          size_t nl;
          while ((nl = m.in.find('\n')) != std::string::npos) {
            const std::string line = m.in.substr(0, nl);
            m.in.erase(0, nl + 1);
            if (fault_ == Fault::kSilent) continue;
            const std::string text = absl::StrCat(m.name, ": ", line, "\n");
            for (auto& [to, other] : members) {
              if (to != fd) Deliver(other, to, fd, text, absl::StartsWith(line, "chat "), held);
            }
          }
        }
        if (!m.out.empty()) {
          const ssize_t w = ::send(fd, m.out.data(), m.out.size(), MSG_NOSIGNAL);
          if (w > 0) m.out.erase(0, static_cast<size_t>(w));
        }
      }
    }
  }

  void Deliver(Member& m, int to, int from, const std::string& text, bool chat, Held& held) {
    if (chat && fault_ != Fault::kNone && !fault_done_.load() && ++chat_lines_ == kFaultAt) {
      fault_done_.store(true);
      switch (fault_) {
        case Fault::kDrop:
          return;
        case Fault::kDuplicate:
          m.out += text;
          m.out += text;
          return;
        case Fault::kReorder:
          held = Held{to, from, text};
          return;
        case Fault::kCorrupt: {
          std::string bad = text;
          bad[bad.size() - 2] ^= 1;  // The last letter of the padding.
          m.out += bad;
          return;
        }
        case Fault::kNone:
        case Fault::kSilent:
          break;
      }
    }
    m.out += text;
    if (held.to == to && held.from == from) {
      m.out += held.text;
      held = Held{};
    }
  }

  const Fault fault_;
  Fd listener_;
  uint16_t port_ = 0;
  Fd stop_;
  int chat_lines_ = 0;  // The server thread's.
  std::atomic<bool> fault_done_{false};
  std::thread thread_;
};

ChatOptions SmallRoom(const Address& target) {
  ChatOptions o;
  o.target = target;
  o.members = 20;
  o.talkers = 3;
  o.threads = 2;
  o.pipeline = 4;
  o.duration = absl::Milliseconds(500);
  o.connect_timeout = absl::Seconds(10);
  return o;
}

// The report is clean, and every line reached every other member once.
void ExpectClean(const ChatReport& r) {
  EXPECT_TRUE(r.ok()) << FormatChatReportText(r);
  EXPECT_GT(r.lines_sent, 0u);
  EXPECT_EQ(r.deliveries, r.lines_sent * static_cast<uint64_t>(r.members - 1));
  EXPECT_EQ(r.expected_deliveries, r.deliveries);
  EXPECT_GT(r.deliveries_measured, 0u);
  EXPECT_EQ(r.latency_ns.count(), r.deliveries_measured);
}

TEST(ChatTest, CleanRoomDeliversEveryLineToEveryOtherMember) {
  FakeChatServer server;
  absl::StatusOr<ChatReport> r = RunChat(SmallRoom(server.address()));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClean(*r);
  EXPECT_EQ(r->members, 20);
  EXPECT_EQ(r->talkers, 3);
}

TEST(ChatTest, ATroupeChatRoomInProcessIsClean) {
  const int fds_before = ::troupe::testing::CountOpenFds();
  {
    BuiltinOptions builtin;
    builtin.mode = "chat";
    ServerOptions options;
    options.workers = 2;
    std::unique_ptr<Server> server =
        ::troupe::testing::StartServer(options, *MakeBuiltinFactory(builtin));
    ASSERT_NE(server, nullptr);
    ChatOptions o = SmallRoom(server->address());
    o.duration = absl::Seconds(1);
    o.pipeline = 1;
    absl::StatusOr<ChatReport> r = RunChat(o);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClean(*r);
    server->Stop();
  }
  EXPECT_EQ(::troupe::testing::CountOpenFds(), fds_before);
}

TEST(ChatTest, OpenLoopKeepsRoughlyToTheRate) {
  FakeChatServer server;
  ChatOptions o = SmallRoom(server.address());
  o.rate = 600;  // Lines per second in all.
  o.duration = absl::Seconds(1);
  absl::StatusOr<ChatReport> r = RunChat(o);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClean(*r);
  // A bound on a hang or a runaway, not a measurement.
  EXPECT_GT(r->lines_sent, 100u);
  EXPECT_LT(r->lines_sent, 1200u);
}

TEST(ChatTest, OneDroppedLineIsLost) {
  FakeChatServer server(Fault::kDrop);
  absl::StatusOr<ChatReport> r = RunChat(SmallRoom(server.address()));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(server.fault_done());
  EXPECT_FALSE(r->ok());
  EXPECT_EQ(r->lost, 1u) << FormatChatReportText(*r);
  EXPECT_EQ(r->duplicates + r->reordered + r->corrupt + r->closed + r->stalled, 0u)
      << FormatChatReportText(*r);
  EXPECT_EQ(r->deliveries + 1, r->expected_deliveries);
  EXPECT_TRUE(absl::StrContains(FormatChatReportText(*r), "missed talker"))
      << FormatChatReportText(*r);
}

TEST(ChatTest, OneDuplicatedLineIsADuplicate) {
  FakeChatServer server(Fault::kDuplicate);
  absl::StatusOr<ChatReport> r = RunChat(SmallRoom(server.address()));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(server.fault_done());
  EXPECT_FALSE(r->ok());
  EXPECT_EQ(r->duplicates, 1u) << FormatChatReportText(*r);
  EXPECT_EQ(r->lost + r->reordered + r->corrupt + r->closed + r->stalled, 0u)
      << FormatChatReportText(*r);
  EXPECT_EQ(r->deliveries, r->expected_deliveries);
}

TEST(ChatTest, TwoSwappedLinesAreReordered) {
  FakeChatServer server(Fault::kReorder);
  absl::StatusOr<ChatReport> r = RunChat(SmallRoom(server.address()));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(server.fault_done());
  EXPECT_FALSE(r->ok());
  EXPECT_EQ(r->reordered, 1u) << FormatChatReportText(*r);
  EXPECT_EQ(r->lost + r->duplicates + r->corrupt + r->closed + r->stalled, 0u)
      << FormatChatReportText(*r);
  EXPECT_TRUE(absl::StrContains(FormatChatReportText(*r), "after line"))
      << FormatChatReportText(*r);
}

TEST(ChatTest, OneCorruptLineIsCorruptAndItsLineLost) {
  FakeChatServer server(Fault::kCorrupt);
  absl::StatusOr<ChatReport> r = RunChat(SmallRoom(server.address()));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(server.fault_done());
  EXPECT_FALSE(r->ok());
  EXPECT_EQ(r->corrupt, 1u) << FormatChatReportText(*r);
  EXPECT_EQ(r->lost, 1u) << FormatChatReportText(*r);
  EXPECT_TRUE(absl::StrContains(FormatChatReportText(*r), "wrong padding"))
      << FormatChatReportText(*r);
}

TEST(ChatTest, ADroppedLineWithAWindowOfOneStallsItsTalker) {
  FakeChatServer server(Fault::kDrop);
  ChatOptions o = SmallRoom(server.address());
  o.pipeline = 1;
  o.duration = absl::Seconds(1);
  // Long enough that no other talker stalls on a loaded machine.
  o.stall_timeout = absl::Milliseconds(500);
  absl::StatusOr<ChatReport> r = RunChat(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stalled, 1u) << FormatChatReportText(*r);
  EXPECT_EQ(r->lost, 1u) << FormatChatReportText(*r);
  EXPECT_TRUE(absl::StrContains(FormatChatReportText(*r), "stalled"));
}

TEST(ChatTest, ARoomThatNeverDeliversFailsTheJoin) {
  FakeChatServer server(Fault::kSilent);
  ChatOptions o = SmallRoom(server.address());
  o.connect_timeout = absl::Seconds(1);  // Also the join's bound.
  absl::StatusOr<ChatReport> r = RunChat(o);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "0 of the 19 other members")) << r.status();
}

TEST(ChatTest, ARefusedTargetFailsTheConnect) {
  // A port that was just free.
  uint16_t port = 0;
  {
    absl::StatusOr<Fd> l = ListenTcp(*Address::FromHostPort("127.0.0.1", 0));
    ASSERT_TRUE(l.ok());
    port = LocalAddress(l->get())->port();
  }
  absl::StatusOr<ChatReport> r = RunChat(SmallRoom(*Address::FromHostPort("127.0.0.1", port)));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "could not connect")) << r.status();
}

TEST(ChatTest, InvalidOptionsAreRejected) {
  ChatOptions o = SmallRoom(*Address::FromHostPort("127.0.0.1", 7));
  o.talkers = 21;
  EXPECT_FALSE(ValidateChatOptions(o).ok());
  o = SmallRoom(*Address::FromHostPort("127.0.0.1", 7));
  o.members = 1;
  o.talkers = 1;
  EXPECT_FALSE(ValidateChatOptions(o).ok());
  o = SmallRoom(*Address::FromHostPort("127.0.0.1", 7));
  o.pipeline = 0;
  EXPECT_FALSE(ValidateChatOptions(o).ok());
  o = SmallRoom(*Address::FromHostPort("127.0.0.1", 7));
  o.rate = -1;
  EXPECT_FALSE(ValidateChatOptions(o).ok());
  EXPECT_TRUE(ValidateChatOptions(SmallRoom(*Address::FromHostPort("127.0.0.1", 7))).ok());
}

TEST(ChatTest, ReportsNameTheirFields) {
  FakeChatServer server(Fault::kDuplicate);
  absl::StatusOr<ChatReport> r = RunChat(SmallRoom(server.address()));
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string json = FormatChatReportJson(*r);
  EXPECT_TRUE(absl::StartsWith(json, "{\"target\":")) << json;
  EXPECT_TRUE(absl::StrContains(json, "\"mode\":\"chat\"")) << json;
  EXPECT_TRUE(absl::StrContains(json, "\"errors\":{\"total\":1,")) << json;
  EXPECT_TRUE(absl::StrContains(json, "\"duplicate\":1")) << json;
  EXPECT_TRUE(absl::StrContains(json, "\"ok\":false}")) << json;
  const std::string csv = FormatChatReportCsv(*r);
  EXPECT_TRUE(absl::StrContains(csv, "deliveries_per_s,latency_us_p50")) << csv;
  EXPECT_TRUE(absl::StrContains(FormatChatReportText(*r), "duplicate 1"));
}

// ---------------------------------------------------------------------------
// The programs: echo-cluster --mode chat and raw-epoll-chat.

TEST(ChatTest, EchoClusterChatModeIsClean) {
  ::troupe::testing::ClusterProcess cluster({"--mode=chat", "--workers=2"});
  ASSERT_GT(cluster.port(), 0);
  ChatOptions o = SmallRoom(cluster.address());
  o.duration = absl::Seconds(1);
  absl::StatusOr<ChatReport> r = RunChat(o);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClean(*r);
  ASSERT_TRUE(cluster.process().Signal(SIGTERM).ok());
  EXPECT_EQ(cluster.process().Wait(kTimeout).value_or(-1), 0);
}

TEST(ChatTest, RawEpollChatIsClean) {
  const std::string path = BinPath("raw-epoll-chat");
  if (::access(path.c_str(), X_OK) != 0) GTEST_SKIP() << "not built (TROUPE_BUILD_BENCH off)";
  absl::StatusOr<std::unique_ptr<Subprocess>> peer = Subprocess::Start({path, "--port", "0"});
  ASSERT_TRUE(peer.ok()) << peer.status();
  // "listening on 127.0.0.1:PORT"
  absl::StatusOr<std::string> line = (*peer)->ReadLine(kTimeout);
  ASSERT_TRUE(line.ok()) << line.status();
  int port = 0;
  ASSERT_TRUE(absl::StartsWith(*line, "listening on 127.0.0.1:")) << *line;
  ASSERT_TRUE(absl::SimpleAtoi(line->substr(line->rfind(':') + 1), &port)) << *line;
  ChatOptions o = SmallRoom(*Address::FromHostPort("127.0.0.1", static_cast<uint16_t>(port)));
  o.duration = absl::Seconds(1);
  absl::StatusOr<ChatReport> r = RunChat(o);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClean(*r);
  ASSERT_TRUE((*peer)->Signal(SIGTERM).ok());
  EXPECT_EQ((*peer)->Wait(kTimeout).value_or(-1), 0);
}

TEST(ChatTest, RawEpollChatTakesOneThreadOnly) {
  const std::string path = BinPath("raw-epoll-chat");
  if (::access(path.c_str(), X_OK) != 0) GTEST_SKIP() << "not built (TROUPE_BUILD_BENCH off)";
  const ::troupe::testing::ProgramResult r =
      ::troupe::testing::RunProgram({path, "--port", "0", "--threads", "2"}, kTimeout);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "one thread only")) << r.output;
}

// ---------------------------------------------------------------------------
// echo-load --chat as a user runs it.

::troupe::testing::ProgramResult RunEchoLoad(std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("echo-load"));
  return ::troupe::testing::RunProgram(args, kTimeout);
}

TEST(ChatTest, EchoLoadChatExitsZeroOnACleanRoom) {
  FakeChatServer server;
  const ::troupe::testing::ProgramResult r = RunEchoLoad(
      {"--chat", absl::StrCat("--port=", server.address().port()), "--connections=20",
       "--talkers=3", "--threads=2", "--duration=500ms", "--warmup=0s", "--pipeline=2"});
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "deliveries")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "errors        none")) << r.output;
}

TEST(ChatTest, EchoLoadChatExitsOneOnALostLine) {
  FakeChatServer server(Fault::kDrop);
  const ::troupe::testing::ProgramResult r = RunEchoLoad(
      {"--chat", absl::StrCat("--port=", server.address().port()), "--connections=20",
       "--talkers=3", "--threads=2", "--duration=500ms", "--warmup=0s", "--pipeline=4", "--json"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "\"lost\":1")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "run failed: 1 errors (lost 1")) << r.output;
}

TEST(ChatTest, EchoLoadChatUsageErrorsExitTwo) {
  const std::vector<std::vector<std::string>> cases = {
      {"--chat", "--connections=5", "--talkers=6"},
      {"--chat", "--connections=1", "--talkers=1"},
      {"--chat", "--messages", "hi"},
      {"--chat", "--reconnect"},
      {"--chat", "--churn"},
      {"--chat", "--framing=lines"},
      {"--chat", "--tls", "--tls-insecure"},
  };
  for (const std::vector<std::string>& args : cases) {
    const ::troupe::testing::ProgramResult r = RunEchoLoad(args);
    EXPECT_EQ(r.code, 2) << absl::StrJoin(args, " ") << ": " << r.output;
  }
}

}  // namespace
}  // namespace troupe
