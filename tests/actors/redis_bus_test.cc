// The Redis group bus (actors/redis_bus.h) against a real redis-server that
// the test starts on a free loopback port and stops: two nodes (two Servers
// in this process, each with its own bus) share the chat room; a line reaches
// the members of both nodes exactly once; while Redis is away local delivery
// goes on and what could not be carried is counted; once Redis is back the
// bus has reconnected by itself.
#include "actors/redis_bus.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "actors/builtin.h"
#include "core/base/fd.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "tests/support/line_client.h"
#include "tests/support/start_server.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using testing::LineClient;
using testing::Subprocess;
using testing::WaitFor;

// A program found on PATH (and the usual sbin directories, which root's
// PATH has but a CI shell may not), or "" when it is not installed.
std::string FindProgram(const std::string& name) {
  std::string path = getenv("PATH") != nullptr ? getenv("PATH") : "";
  path += ":/usr/sbin:/usr/bin";
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    if (dir.empty()) continue;
    std::string candidate = absl::StrCat(dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// A port nobody listens on now (bound, read back, released).
uint16_t FreePort() {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return 0;
  }
  return ntohs(addr.sin_port);
}

// redis-server in the foreground, no persistence, on 127.0.0.1:`port`.
std::unique_ptr<Subprocess> StartRedis(uint16_t port) {
  const std::string redis = FindProgram("redis-server");
  EXPECT_FALSE(redis.empty()) << "redis-server not installed (scripts/install-deps installs it)";
  if (redis.empty()) return nullptr;
  auto process = Subprocess::Start({redis, "--port", absl::StrCat(port), "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no", "--daemonize", "no"},
                                   Subprocess::Stderr::kMergeIntoStdout);
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return nullptr;
  for (;;) {
    absl::StatusOr<std::string> line = (*process)->ReadLine(absl::Seconds(10));
    if (!line.ok()) {
      ADD_FAILURE() << "redis-server did not come up: " << line.status();
      return nullptr;
    }
    if (absl::StrContains(*line, "Ready to accept connections")) break;
  }
  return std::move(*process);
}

struct Node {
  std::unique_ptr<RedisBus> bus;
  std::unique_ptr<Server> server;
  ~Node() {
    if (server) server->Stop();
    if (bus) bus->Stop();
  }
};

std::unique_ptr<Node> StartNode(uint16_t redis_port, const std::string& id) {
  auto node = std::make_unique<Node>();
  RedisBusOptions options;
  options.redis = *Address::FromHostPort("127.0.0.1", redis_port);
  options.node_id = id;
  options.min_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  options.ping_interval = absl::Milliseconds(100);
  options.ping_timeout = absl::Milliseconds(500);
  auto bus = RedisBus::Create(options);
  EXPECT_TRUE(bus.ok()) << bus.status();
  if (!bus.ok()) return nullptr;
  node->bus = *std::move(bus);
  BuiltinOptions chat;
  chat.mode = "chat";
  ServerOptions server_options;
  server_options.workers = 2;
  node->server = testing::StartServer(server_options, *MakeBuiltinFactory(chat),
                                      [&](Server& s) { AttachBus(s, *node->bus); });
  return node;
}

bool Linked(const RedisBus& bus) {
  const RedisBusStats s = bus.Stats();
  return s.subscribed && s.publisher_up;
}

TEST(RedisUrlTest, ParsesHostAndPortAndRejectsWhatItCannotHonour) {
  EXPECT_EQ(ParseRedisUrl("redis://127.0.0.1:6380")->ToString(), "127.0.0.1:6380");
  EXPECT_EQ(ParseRedisUrl("redis://127.0.0.1")->ToString(), "127.0.0.1:6379");
  EXPECT_EQ(ParseRedisUrl("redis://127.0.0.1:7000/")->ToString(), "127.0.0.1:7000");
  EXPECT_EQ(ParseRedisUrl("redis://[::1]:7000")->ToString(), "[::1]:7000");
  for (const char* bad :
       {"127.0.0.1:6379", "redis://", "redis://:6379", "redis://127.0.0.1:0",
        "redis://127.0.0.1:65536", "redis://127.0.0.1:x", "redis://user:pw@127.0.0.1",
        "redis://127.0.0.1:6379/2", "rediss://127.0.0.1", "redis://[::1", "redis://[::1]x"}) {
    absl::StatusOr<Address> parsed = ParseRedisUrl(bad);
    EXPECT_FALSE(parsed.ok()) << bad << " parsed as " << parsed->ToString();
    if (!parsed.ok()) {
      EXPECT_TRUE(absl::StrContains(parsed.status().message(), bad));
    }
  }
}

TEST(RedisBusTest, OptionsAreChecked) {
  RedisBusOptions options;
  options.redis = *Address::Parse("127.0.0.1:6379");
  options.node_id = "has space";
  EXPECT_FALSE(RedisBus::Create(options).ok());
  options.node_id = "";
  options.max_unacknowledged = 0;
  EXPECT_FALSE(RedisBus::Create(options).ok());
  options.max_unacknowledged = 1;
  options.min_backoff = absl::ZeroDuration();
  EXPECT_FALSE(RedisBus::Create(options).ok());
  options.min_backoff = absl::Seconds(1);
  auto ok = RedisBus::Create(options);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ((*ok)->node_id().size(), 16u);  // random, hex
}

// Redis on a free port, two nodes linked through it, and three chat
// members: a1 and a2 on node a, b1 on node b.
class TwoNodesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port = FreePort();
    ASSERT_NE(port, 0);
    redis = StartRedis(port);
    ASSERT_NE(redis, nullptr);
    a = StartNode(port, "node-a");
    b = StartNode(port, "node-b");
    ASSERT_TRUE(a && a->server && b && b->server);
    ASSERT_TRUE(WaitFor([&] { return Linked(*a->bus) && Linked(*b->bus); }));
    a1 = std::make_unique<LineClient>(a->server->address());
    a2 = std::make_unique<LineClient>(a->server->address());
    b1 = std::make_unique<LineClient>(b->server->address());
    ASSERT_TRUE(WaitFor([&] {
      return a->server->Stats().Total().accepted == 2 && b->server->Stats().Total().accepted == 1;
    }));
  }

  uint16_t port = 0;
  std::unique_ptr<Subprocess> redis;
  std::unique_ptr<Node> a, b;
  std::unique_ptr<LineClient> a1, a2, b1;
};

TEST_F(TwoNodesTest, ALineReachesEveryNodeOnceAndSurvivesRedisGoingAway) {
  // Across nodes: b1 gets a1's line once; a2, on a1's own node, once too
  // (from the Broadcast itself; the copy Redis sends back is skipped).
  ASSERT_TRUE(a1->Send("hi\n"));
  const std::optional<std::string> local = a2->ReadLine();
  ASSERT_TRUE(local.has_value());
  EXPECT_TRUE(local->ends_with(": hi")) << *local;
  EXPECT_EQ(b1->ReadLine(), local);
  ASSERT_TRUE(WaitFor([&] { return a->bus->Stats().own_skipped == 1; }));
  EXPECT_FALSE(a2->ReadLine(absl::Milliseconds(100)).has_value()) << "a line arrived twice";
  // Both counted on bus threads, after the line may already have arrived.
  EXPECT_TRUE(WaitFor([&] { return b->bus->Stats().delivered == 1u; }));
  EXPECT_TRUE(WaitFor([&] { return a->bus->Stats().published == 1u; }));
  // And back: a1 and a2 both hear b1.
  ASSERT_TRUE(b1->Send("yo\n"));
  const std::optional<std::string> remote = a1->ReadLine();
  ASSERT_TRUE(remote.has_value());
  EXPECT_TRUE(remote->ends_with(": yo")) << *remote;
  EXPECT_EQ(a2->ReadLine(), remote);

  // Redis dies: local delivery goes on; what could not go across is counted.
  ASSERT_TRUE(redis->Signal(SIGKILL).ok());
  ASSERT_TRUE(redis->Wait(absl::Seconds(10)).ok());
  ASSERT_TRUE(WaitFor([&] { return !a->bus->Stats().publisher_up; }));
  const uint64_t dropped_before = a->bus->Stats().publish_dropped;
  ASSERT_TRUE(a1->Send("alone\n"));
  const std::optional<std::string> alone = a2->ReadLine();
  ASSERT_TRUE(alone.has_value());
  EXPECT_TRUE(alone->ends_with(": alone")) << *alone;
  // (The sender's reactor publishes right after its local fan-out, which
  // a2's reactor may deliver first.)
  EXPECT_TRUE(WaitFor([&] { return a->bus->Stats().publish_dropped == dropped_before + 1; }));
  // Publisher and subscriber each notice on their own read; the second may
  // not have yet.
  EXPECT_TRUE(WaitFor([&] { return a->bus->Stats().disconnects >= 2u; }));

  // Redis is back on the same port: both buses find it again by themselves.
  redis = StartRedis(port);
  ASSERT_NE(redis, nullptr);
  ASSERT_TRUE(WaitFor([&] { return Linked(*a->bus) && Linked(*b->bus); }));
  ASSERT_TRUE(a1->Send("back\n"));
  const std::optional<std::string> back = b1->ReadLine();
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(back->ends_with(": back")) << *back;
  EXPECT_EQ(a2->ReadLine(), back);
  // "alone" never reached b1: Redis keeps nothing for an absent subscriber.
  EXPECT_GE(a->bus->Stats().connects, 4u);
  EXPECT_EQ(a->bus->Stats().malformed, 0u);
  EXPECT_EQ(b->bus->Stats().malformed, 0u);
  const std::string metrics = a->bus->RenderPrometheus();
  EXPECT_TRUE(absl::StrContains(metrics, "troupe_bus_publish_dropped_total 1\n")) << metrics;
  EXPECT_TRUE(absl::StrContains(metrics, "troupe_bus_subscribed 1\n")) << metrics;
}

// A Redis that stops answering keeps its TCP connections open: only the
// bus's PINGs notice. Local delivery goes on meanwhile, and once Redis
// answers again the bus is back by itself.
TEST_F(TwoNodesTest, AWedgedRedisIsNoticedAndLeftBehind) {
  ASSERT_TRUE(redis->Signal(SIGSTOP).ok());
  ASSERT_TRUE(WaitFor([&] { return a->bus->Stats().ping_timeouts >= 1 && !Linked(*a->bus); }));
  ASSERT_TRUE(a1->Send("wedged\n"));
  const std::optional<std::string> local = a2->ReadLine();
  ASSERT_TRUE(local.has_value());
  EXPECT_TRUE(local->ends_with(": wedged")) << *local;

  ASSERT_TRUE(redis->Signal(SIGCONT).ok());
  ASSERT_TRUE(WaitFor([&] { return Linked(*a->bus) && Linked(*b->bus); }));
  ASSERT_TRUE(a1->Send("awake\n"));
  const std::optional<std::string> across = b1->ReadLine();
  ASSERT_TRUE(across.has_value());
  EXPECT_TRUE(across->ends_with(": awake")) << *across;
  EXPECT_EQ(a->bus->Stats().malformed, 0u);
}

}  // namespace
}  // namespace troupe
