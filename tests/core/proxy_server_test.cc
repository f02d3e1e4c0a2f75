// ServerOptions::proxy_protocol (core/loop/proxy_header.h): a Server behind a
// PROXY-protocol proxy, in both accept modes, with real sockets on 127.0.0.1.
// The test plays the proxy: it writes the header itself.
#include <arpa/inet.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "core/net/socket.h"
#include "core/ops/metrics_server.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "tests/support/line_client.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using testing::LineClient;
using testing::WaitFor;

// What the inner handlers saw, across every connection of a server.
struct Seen {
  std::atomic<int> created{0};  // the user's factory ran
  std::atomic<int> opened{0};
  std::atomic<int> closed{0};
};

// Says, on open, the peer address it was created with and the one it sees
// ("<at creation> <at open>\n"), then echoes every byte.
class PeerEchoHandler final : public ConnectionHandler {
 public:
  PeerEchoHandler(std::shared_ptr<Seen> seen, std::string created_peer)
      : seen_(std::move(seen)), created_peer_(std::move(created_peer)) {}
  void OnOpen(Connection& conn) override {
    seen_->opened.fetch_add(1);
    conn.Send(created_peer_ + " " + conn.peer().ToString() + "\n");
  }
  size_t OnData(Connection& conn, std::string_view data) override {
    conn.Send(data);
    return data.size();
  }
  void OnClose(Connection&, CloseReason) override { seen_->closed.fetch_add(1); }

 private:
  std::shared_ptr<Seen> seen_;
  std::string created_peer_;
};

HandlerFactory PeerEchoFactory(std::shared_ptr<Seen> seen) {
  return [seen](Connection& conn) {
    seen->created.fetch_add(1);
    return std::make_unique<PeerEchoHandler>(seen, conn.peer().ToString());
  };
}

std::string V2(uint8_t version_command, uint8_t family_transport, const std::string& body) {
  std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
  h.push_back(static_cast<char>(version_command));
  h.push_back(static_cast<char>(family_transport));
  h.push_back(static_cast<char>(body.size() >> 8));
  h.push_back(static_cast<char>(body.size() & 0xFF));
  return h + body;
}

std::string Bytes(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s;
}

uint64_t Closed(const Server& server, CloseReason reason) {
  return server.Stats().Total().closed_by_reason[static_cast<size_t>(reason)];
}

class ProxyServerTest : public ::testing::TestWithParam<AcceptMode> {
 protected:
  void Start(absl::Duration timeout = absl::Seconds(20)) {
    ServerOptions options;
    options.address = *Address::Parse("127.0.0.1:0");
    options.workers = 2;
    options.accept_mode = GetParam();
    options.proxy_protocol = true;
    options.proxy_header_timeout = timeout;
    auto server = Server::Create(options, PeerEchoFactory(seen_));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    server_->Start();
  }

  // A connection that gave a v1 header, saw the address it named, and echoes.
  void ExpectServing(LineClient& client, const std::string& port) {
    ASSERT_TRUE(client.Send("PROXY TCP4 198.51.100.9 192.0.2.1 " + port + " 80\r\nping\n"));
    EXPECT_EQ(client.ReadLine(), "198.51.100.9:" + port + " 198.51.100.9:" + port);
    EXPECT_EQ(client.ReadLine(), "ping");
  }

  std::shared_ptr<Seen> seen_ = std::make_shared<Seen>();
  std::unique_ptr<Server> server_;
};

TEST_P(ProxyServerTest, V1HeaderNamesTheClientAndWhatFollowsIsEchoed) {
  Start();
  LineClient client(server_->address());
  ASSERT_TRUE(client.connected());
  // The header and the first bytes in one write, as a proxy sends them.
  ASSERT_TRUE(client.Send("PROXY TCP4 203.0.113.7 192.0.2.1 4242 7007\r\nhello\n"));
  // The user's factory already saw the client's address, and so did OnOpen.
  EXPECT_EQ(client.ReadLine(), "203.0.113.7:4242 203.0.113.7:4242");
  EXPECT_EQ(client.ReadLine(), "hello");
  ASSERT_TRUE(client.Send("PROXY TCP4 not a header, just data\n"));
  EXPECT_EQ(client.ReadLine(), "PROXY TCP4 not a header, just data");
}

TEST_P(ProxyServerTest, V2HeaderWithTlvsNamesAnIpv6Client) {
  Start();
  LineClient client(server_->address());
  ASSERT_TRUE(client.connected());
  // [2001:db8::7]:4242 -> [::1]:7007, then an ALPN TLV.
  std::string block(32, '\0');
  ASSERT_EQ(::inet_pton(AF_INET6, "2001:db8::7", block.data()), 1);
  ASSERT_EQ(::inet_pton(AF_INET6, "::1", block.data() + 16), 1);
  block += Bytes({4242 >> 8, 4242 & 0xFF, 7007 >> 8, 7007 & 0xFF});
  block += Bytes({0x01, 0, 2, 'h', '2'});
  std::string data = V2(0x21, 0x21, block) + std::string("a\0b\r\n\r\n\0binary\n", 16);
  ASSERT_TRUE(client.Send(data));
  EXPECT_EQ(client.ReadLine(), "[2001:db8::7]:4242 [2001:db8::7]:4242");
  EXPECT_EQ(client.ReadBytes(16), std::string("a\0b\r\n\r\n\0binary\n", 16));
}

TEST_P(ProxyServerTest, HeaderFedByteByByteStillWorks) {
  Start();
  LineClient client(server_->address());
  ASSERT_TRUE(client.connected());
  const std::string header = V2(0x21, 0x11, Bytes({10, 1, 2, 3, 10, 0, 0, 1, 0x30, 0x39, 0, 80}));
  for (const char c : header) ASSERT_TRUE(client.Send(std::string_view(&c, 1)));
  ASSERT_TRUE(client.Send("after\n"));
  EXPECT_EQ(client.ReadLine(), "10.1.2.3:12345 10.1.2.3:12345");
  EXPECT_EQ(client.ReadLine(), "after");
}

TEST_P(ProxyServerTest, LocalKeepsTheSocketsOwnPeer) {
  Start();
  for (const std::string& header : {V2(0x20, 0x00, ""), std::string("PROXY UNKNOWN\r\n")}) {
    LineClient client(server_->address());
    ASSERT_TRUE(client.connected());
    const absl::StatusOr<Address> self = LocalAddress(client.fd());
    ASSERT_TRUE(self.ok()) << self.status();
    ASSERT_TRUE(client.Send(header + "x\n"));
    EXPECT_EQ(client.ReadLine(), self->ToString() + " " + self->ToString());
    EXPECT_EQ(client.ReadLine(), "x");
  }
}

TEST_P(ProxyServerTest, GarbageHeaderClosesOnlyThatConnection) {
  Start();
  LineClient good(server_->address());
  ASSERT_TRUE(good.connected());
  ExpectServing(good, "1111");

  for (const std::string garbage :
       {"GET / HTTP/1.1\r\nHost: example\r\n\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\nx"}) {
    LineClient bad(server_->address());
    ASSERT_TRUE(bad.connected());
    ASSERT_TRUE(bad.Send(garbage));
    EXPECT_TRUE(bad.WaitForEof());
  }
  // A v2 header with a length too short for its addresses: rejected before
  // the rest of the header could come.
  LineClient lying(server_->address());
  ASSERT_TRUE(lying.Send(V2(0x21, 0x11, std::string(11, '\0')).substr(0, 16)));
  EXPECT_TRUE(lying.WaitForEof());
  // A peer that closes inside its header.
  LineClient cut(server_->address());
  ASSERT_TRUE(cut.Send("PROXY TCP4 1.2."));
  cut.ShutdownWrite();
  EXPECT_TRUE(cut.WaitForEof());

  ASSERT_TRUE(WaitFor([&] { return Closed(*server_, CloseReason::kProxyHeaderInvalid) == 4; }));
  EXPECT_EQ(Closed(*server_, CloseReason::kProxyHeaderTimeout), 0u);
  // No inner handler was made for any of them, so none had OnOpen or OnClose.
  EXPECT_EQ(seen_->created.load(), 1);
  EXPECT_EQ(seen_->opened.load(), 1);
  EXPECT_EQ(seen_->closed.load(), 0);

  ASSERT_TRUE(good.Send("still here\n"));
  EXPECT_EQ(good.ReadLine(), "still here");
  LineClient next(server_->address());
  ExpectServing(next, "2222");
}

TEST_P(ProxyServerTest, ConnectAndCloseWithoutAByteIsAnOrdinaryClose) {
  Start();
  {
    LineClient probe(server_->address());  // a TCP health check
    ASSERT_TRUE(probe.connected());
    probe.ShutdownWrite();
    EXPECT_TRUE(probe.WaitForEof());
  }
  ASSERT_TRUE(WaitFor([&] { return server_->Stats().Total().closed == 1; }));
  EXPECT_EQ(Closed(*server_, CloseReason::kProxyHeaderInvalid), 0u);
  EXPECT_EQ(seen_->created.load(), 0);
}

TEST_P(ProxyServerTest, MissingHeaderTimesOutAndClosesOnlyThatConnection) {
  Start(absl::Milliseconds(200));
  // The good one first: its (cleared) deadline falls before the others', so
  // by the time theirs have fired, its own would have too.
  LineClient good(server_->address());
  ExpectServing(good, "3333");
  LineClient silent(server_->address());
  ASSERT_TRUE(silent.connected());
  LineClient partial(server_->address());
  ASSERT_TRUE(partial.Send("PROXY TCP4 1.2.3.4 "));

  EXPECT_TRUE(silent.WaitForEof());
  EXPECT_TRUE(partial.WaitForEof());
  ASSERT_TRUE(WaitFor([&] { return Closed(*server_, CloseReason::kProxyHeaderTimeout) == 2; }));
  EXPECT_EQ(Closed(*server_, CloseReason::kProxyHeaderInvalid), 0u);
  EXPECT_EQ(seen_->created.load(), 1);

  // The one that sent its header in time outlives the timeout.
  ASSERT_TRUE(good.Send("later\n"));
  EXPECT_EQ(good.ReadLine(), "later");
  good.ShutdownWrite();
  EXPECT_TRUE(good.WaitForEof());
  ASSERT_TRUE(WaitFor([&] { return seen_->closed.load() == 1; }));
}

TEST_P(ProxyServerTest, BothReasonsAreOnMetrics) {
  Start(absl::Milliseconds(200));
  LineClient bad(server_->address());
  ASSERT_TRUE(bad.Send("garbage\n"));
  LineClient silent(server_->address());
  ASSERT_TRUE(silent.connected());
  EXPECT_TRUE(bad.WaitForEof());
  EXPECT_TRUE(silent.WaitForEof());
  ASSERT_TRUE(WaitFor([&] {
    return Closed(*server_, CloseReason::kProxyHeaderInvalid) == 1 &&
           Closed(*server_, CloseReason::kProxyHeaderTimeout) == 1;
  }));
  const std::string body = RenderPrometheus(server_->Stats(), true);
  EXPECT_TRUE(absl::StrContains(body, "reason=\"proxy_header_invalid\"} 1\n")) << body;
  EXPECT_TRUE(absl::StrContains(body, "reason=\"proxy_header_timeout\"} 1\n")) << body;
}

INSTANTIATE_TEST_SUITE_P(BothAcceptModes, ProxyServerTest,
                         ::testing::Values(AcceptMode::kAcceptorThread, AcceptMode::kReusePort),
                         [](const ::testing::TestParamInfo<AcceptMode>& param_info) {
                           return param_info.param == AcceptMode::kReusePort ? "ReusePort"
                                                                             : "AcceptorThread";
                         });

TEST(ProxyServerOptionsTest, HeaderTimeoutMustBePositive) {
  ServerOptions options;
  options.address = *Address::Parse("127.0.0.1:0");
  options.workers = 1;
  options.proxy_protocol = true;
  options.proxy_header_timeout = absl::ZeroDuration();
  auto server = Server::Create(
      options, [](Connection&) -> std::unique_ptr<ConnectionHandler> { return nullptr; });
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ProxyServerOptionsTest, OffByDefaultSoAHeaderIsJustData) {
  ServerOptions options;
  EXPECT_FALSE(options.proxy_protocol);
  options.address = *Address::Parse("127.0.0.1:0");
  options.workers = 1;
  auto seen = std::make_shared<Seen>();
  auto server = Server::Create(options, PeerEchoFactory(seen));
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->Start();
  LineClient client((*server)->address());
  ASSERT_TRUE(client.connected());
  const absl::StatusOr<Address> self = LocalAddress(client.fd());
  ASSERT_TRUE(self.ok());
  EXPECT_EQ(client.ReadLine(), self->ToString() + " " + self->ToString());
  ASSERT_TRUE(client.Send("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"));
  EXPECT_EQ(client.ReadLine(), "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r");
}

}  // namespace
}  // namespace troupe
