// Steady state allocates nothing: once a connection is warm, echoing a
// message through a real Server (EchoActor, one reactor, loopback TCP) makes
// no heap allocation on any thread. This binary replaces the global
// operator new/delete with counting versions, so it is its own test target.
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <ostream>
#include <string>
#include <thread>

#include "actors/builtin.h"
#include "core/net/socket.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "tests/support/counting_new.h"  // replaces operator new/delete

namespace troupe {
namespace {

// Warm-up lets the connection reach its steady state (slot table, buffers,
// the allocator's per-thread caches); then every allocation counts.
constexpr int kWarmupRoundTrips = 1000;
constexpr int kMeasuredRoundTrips = 4000;

// `request` goes out in one send; the same bytes must come back.
bool RoundTrip(int fd, const std::string& request, std::string& reply) {
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return false;
  }
  size_t got = 0;
  while (got < request.size()) {
    const ssize_t n = ::recv(fd, reply.data() + got, request.size() - got, 0);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return reply.compare(0, request.size(), request) == 0;
}

struct Case {
  const char* name;
  CodecKind codec;
  std::string request;  // one write: a whole number of messages
};

// ctest lists each case by name, not as a byte dump.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::string Frame(const std::string& payload) {
  const uint32_t n = static_cast<uint32_t>(payload.size());
  const char header[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                          static_cast<char>(n >> 8), static_cast<char>(n)};
  return std::string(header, 4) + payload;
}

// The counter itself works, on any thread: otherwise a 0 below proves nothing.
TEST(CountingAllocatorTest, SeesAllocationsOnOtherThreads) {
  std::thread other;  // created before counting: starting it allocates
  testing::g_allocations.store(0);
  testing::g_counting.store(true);
  other = std::thread([] { delete new int(7); });
  other.join();
  testing::g_counting.store(false);
  EXPECT_GE(testing::g_allocations.load(), 1u);
}

class EchoAllocTest : public ::testing::TestWithParam<Case> {};

TEST_P(EchoAllocTest, WarmEchoAllocatesNothing) {
  const Case& c = GetParam();
  ServerOptions options;
  options.address = Address::Parse("127.0.0.1:0").value();
  options.workers = 1;
  ActorOptions actor_options;
  actor_options.codec.kind = c.codec;
  auto server = Server::Create(
      options, ActorFactory([] { return std::make_unique<EchoActor>(); }, actor_options));
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->Start();
  absl::StatusOr<Fd> client = ConnectTcpBlocking((*server)->address());
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE(SetNoDelay(client->get()).ok());
  std::string reply(c.request.size(), '\0');

  for (int i = 0; i < kWarmupRoundTrips; ++i) {
    ASSERT_TRUE(RoundTrip(client->get(), c.request, reply)) << "warmup " << i;
  }
  testing::g_allocations.store(0);
  testing::g_counting.store(true);
  bool ok = true;
  for (int i = 0; i < kMeasuredRoundTrips && ok; ++i) {
    ok = RoundTrip(client->get(), c.request, reply);
  }
  testing::g_counting.store(false);
  const uint64_t allocations = testing::g_allocations.load();
  ASSERT_TRUE(ok);
  EXPECT_EQ(allocations, 0u) << allocations << " allocations over " << kMeasuredRoundTrips
                             << " round trips (" << c.name << ")";
  client->Reset();
  (*server)->Stop();
  EXPECT_EQ((*server)->Stats().Total().open, 0u);
}

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

INSTANTIATE_TEST_SUITE_P(
    Codecs, EchoAllocTest,
    ::testing::Values(Case{"raw_64", CodecKind::kRaw, std::string(64, 'r')},
                      Case{"raw_4k", CodecKind::kRaw, std::string(4096, 'R')},
                      Case{"lines_x16", CodecKind::kLines, Repeat(std::string(63, 'l') + "\n", 16)},
                      Case{"length_x16", CodecKind::kLength,
                           Repeat(Frame(std::string(60, 'f')), 16)}),
    // Not `info`: the macro's own function has a parameter of that name.
    [](const ::testing::TestParamInfo<Case>& test) { return std::string(test.param.name); });

}  // namespace
}  // namespace troupe
