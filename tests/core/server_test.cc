// Integration tests: an in-process Server with a core-only echo handler
// (tests/support/echo_handler.h) on 127.0.0.1, real sockets, ephemeral ports.
#include "core/server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "core/net/socket.h"
#include "gtest/gtest.h"
#include "tests/support/echo_handler.h"
#include "tests/support/sync.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using testing::CountOpenFds;
using testing::EchoHandlerFactory;
using testing::WaitFor;

std::unique_ptr<Server> StartEchoServer(int workers) {
  ServerOptions options;
  options.address = *Address::Parse("127.0.0.1:0");
  options.workers = workers;
  options.drain_timeout = absl::Seconds(10);
  auto server = Server::Create(options, EchoHandlerFactory());
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  (*server)->Start();
  return std::move(*server);
}

Fd Connect(const Server& server) {
  absl::StatusOr<Fd> fd = ConnectTcpBlocking(server.address());
  EXPECT_TRUE(fd.ok()) << fd.status();
  return fd.ok() ? std::move(*fd) : Fd();
}

// Byte `i` of stream `seed`: cheap, position-dependent, differs per stream.
char PatternByte(uint64_t seed, uint64_t i) {
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed * 0xC2B2AE3D27D4EB4Full;
  x ^= x >> 29;
  return static_cast<char>(x);
}

bool SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Reads exactly `size` bytes or fails (EOF, error, or 20 s without data).
bool RecvExactly(int fd, std::string& out, size_t size) {
  out.resize(size);
  size_t got = 0;
  while (got < size) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20000) != 1) return false;
    const ssize_t n = ::recv(fd, out.data() + got, size - got, 0);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

// True if the peer closes (EOF or reset) within the timeout, discarding data.
bool ReadsToEof(int fd, int timeout_ms = 20000) {
  char buf[4096];
  while (true) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return false;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return true;
  }
}

// One client of the many-clients test: sends messages of random sizes and
// reads the echo back in small random pieces, all non-blocking.
struct StreamClient {
  Fd fd;
  std::string sent_plan;             // everything this client will send
  std::vector<size_t> message_ends;  // send() boundaries within sent_plan
  size_t next_message = 0;
  size_t sent = 0;
  std::string received;
};

TEST(ServerTest, ManyClientsRandomSizesEveryByteIntact) {
  constexpr int kClients = 200;
  constexpr int kMessagesPerClient = 6;
  const int fds_before = CountOpenFds();
  auto server = StartEchoServer(4);
  ASSERT_NE(server, nullptr);

  std::mt19937_64 rng(20261123);
  std::vector<StreamClient> clients(kClients);
  Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
  ASSERT_TRUE(epoll.valid());
  for (size_t c = 0; c < clients.size(); ++c) {
    StreamClient& client = clients[c];
    absl::StatusOr<Fd> fd = ConnectTcpNonBlocking(server->address());
    ASSERT_TRUE(fd.ok()) << fd.status();
    client.fd = std::move(*fd);
    for (int m = 0; m < kMessagesPerClient; ++m) {
      const size_t size = 1 + rng() % (64 * 1024);
      for (size_t i = 0; i < size; ++i) {
        client.sent_plan.push_back(PatternByte(c, client.sent_plan.size()));
      }
      client.message_ends.push_back(client.sent_plan.size());
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u32 = static_cast<uint32_t>(c);
    ASSERT_EQ(::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, client.fd.get(), &ev), 0);
  }

  int done = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  char buf[1024];
  epoll_event events[64];
  while (done < kClients && absl::Now() < deadline) {
    const int n = ::epoll_wait(epoll.get(), events, 64, 1000);
    for (int i = 0; i < n; ++i) {
      StreamClient& client = clients[events[i].data.u32];
      if ((events[i].events & EPOLLOUT) && client.sent < client.sent_plan.size()) {
        // One send() per planned message (the kernel may still split it).
        const size_t end = client.message_ends[client.next_message];
        const ssize_t w = ::send(client.fd.get(), client.sent_plan.data() + client.sent,
                                 end - client.sent, MSG_NOSIGNAL);
        if (w > 0) {
          client.sent += static_cast<size_t>(w);
          if (client.sent == end) ++client.next_message;
        }
        if (client.sent == client.sent_plan.size()) {
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.u32 = events[i].data.u32;
          ::epoll_ctl(epoll.get(), EPOLL_CTL_MOD, client.fd.get(), &ev);
        }
      }
      if (events[i].events & EPOLLIN) {
        // Small reads on purpose: the server must cope with a slow consumer.
        const size_t want = 1 + rng() % sizeof(buf);
        const ssize_t r = ::recv(client.fd.get(), buf, want, 0);
        ASSERT_GT(r, 0) << "client " << events[i].data.u32 << " lost its connection";
        client.received.append(buf, static_cast<size_t>(r));
        if (client.received.size() == client.sent_plan.size()) {
          ++done;
          ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, client.fd.get(), nullptr);
        }
      }
    }
  }
  ASSERT_EQ(done, kClients) << "timed out";
  for (size_t c = 0; c < clients.size(); ++c) {
    ASSERT_EQ(clients[c].received.size(), clients[c].sent_plan.size());
    ASSERT_TRUE(clients[c].received == clients[c].sent_plan) << "client " << c;
  }

  const ServerStats stats = server->Stats();
  ASSERT_EQ(stats.reactors.size(), 4u);
  for (const ReactorStats& r : stats.reactors) {
    EXPECT_GT(r.accepted, 0u) << "a reactor got no connection";
  }
  EXPECT_EQ(stats.Total().accepted, static_cast<uint64_t>(kClients));
  clients.clear();
  EXPECT_TRUE(WaitFor([&] { return server->Stats().Total().open == 0; }));
  server->Stop();
  server.reset();
  epoll.Reset();
  EXPECT_EQ(CountOpenFds(), fds_before);
}

TEST(ServerTest, ClientCloseClosesServerSide) {
  auto server = StartEchoServer(2);
  ASSERT_NE(server, nullptr);
  std::vector<Fd> fds;
  for (int i = 0; i < 10; ++i) fds.push_back(Connect(*server));
  ASSERT_TRUE(WaitFor([&] { return server->Stats().Total().open == 10; }));
  fds.clear();  // orderly close: FIN
  ASSERT_TRUE(WaitFor([&] { return server->Stats().Total().closed == 10; }));
  const ReactorStats total = server->Stats().Total();
  EXPECT_EQ(total.open, 0u);
  EXPECT_EQ(total.closed_by_reason[static_cast<size_t>(CloseReason::kPeerClosed)], 10u);
}

TEST(ServerTest, HalfCloseStillGetsWholeEcho) {
  auto server = StartEchoServer(1);
  ASSERT_NE(server, nullptr);
  Fd fd = Connect(*server);
  const std::string message(300000, 'h');
  ASSERT_TRUE(SendAll(fd.get(), message.data(), message.size()));
  ASSERT_EQ(::shutdown(fd.get(), SHUT_WR), 0);
  std::string echoed;
  ASSERT_TRUE(RecvExactly(fd.get(), echoed, message.size()));
  EXPECT_EQ(echoed, message);
  EXPECT_TRUE(ReadsToEof(fd.get()));  // then the server closes
}

TEST(ServerTest, LargeStreamComesBackIdentical) {
  constexpr size_t kTotal = 64u << 20;
  auto server = StartEchoServer(2);
  ASSERT_NE(server, nullptr);
  Fd fd = Connect(*server);
  std::thread sender([&] {
    std::string chunk(256 * 1024, '\0');
    for (size_t offset = 0; offset < kTotal; offset += chunk.size()) {
      for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = PatternByte(7, offset + i);
      if (!SendAll(fd.get(), chunk.data(), chunk.size())) return;
    }
  });
  size_t received = 0;
  size_t mismatches = 0;
  std::string buf(128 * 1024, '\0');
  while (received < kTotal) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 20000) != 1) break;
    const ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
    if (n <= 0) break;
    for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
      if (buf[i] != PatternByte(7, received + i)) ++mismatches;
    }
    received += static_cast<size_t>(n);
  }
  sender.join();
  EXPECT_EQ(received, kTotal);
  EXPECT_EQ(mismatches, 0u);
}

TEST(ServerTest, ResetMidStreamLeavesOthersServing) {
  auto server = StartEchoServer(1);  // one reactor: the victim and the rest share it
  ASSERT_NE(server, nullptr);
  Fd survivor = Connect(*server);
  for (int round = 0; round < 20; ++round) {
    Fd victim = Connect(*server);
    // Fill the server's output towards the victim (the victim never reads).
    const std::string bulk(512 * 1024, 'x');
    ::send(victim.get(), bulk.data(), bulk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    linger hard{1, 0};  // close() now sends RST
    ASSERT_EQ(::setsockopt(victim.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof(hard)), 0);
    victim.Reset();
    const std::string ping = "ping " + std::to_string(round);
    ASSERT_TRUE(SendAll(survivor.get(), ping.data(), ping.size()));
    std::string pong;
    ASSERT_TRUE(RecvExactly(survivor.get(), pong, ping.size()));
    EXPECT_EQ(pong, ping);
  }
  ASSERT_TRUE(WaitFor([&] { return server->Stats().Total().closed == 20; }));
  EXPECT_EQ(server->Stats().Total().open, 1u);
}

TEST(ServerTest, PortInUseNamesTheAddress) {
  auto first = StartEchoServer(1);
  ASSERT_NE(first, nullptr);
  ServerOptions options;
  options.address = first->address();
  options.workers = 1;
  auto second = Server::Create(options, EchoHandlerFactory());
  ASSERT_FALSE(second.ok());
  const std::string message(second.status().message());
  EXPECT_NE(message.find("bind " + first->address().ToString()), std::string::npos) << message;
  EXPECT_NE(message.find("in use"), std::string::npos) << message;
}

TEST(ServerTest, StopFlushesReadBytesThenCloses) {
  auto server = StartEchoServer(2);
  ASSERT_NE(server, nullptr);
  std::vector<Fd> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(Connect(*server));
    const std::string hello = "hello " + std::to_string(i);
    ASSERT_TRUE(SendAll(clients.back().get(), hello.data(), hello.size()));
  }
  // Every connection has been read (bytes echoed), then the server drains.
  ASSERT_TRUE(WaitFor([&] { return server->Stats().Total().bytes_out >= 8 * 7; }));
  testing::Notification stopped;
  std::thread stopper([&] {
    server->Stop();
    stopped.Notify();
  });
  for (size_t i = 0; i < clients.size(); ++i) {
    const std::string hello = "hello " + std::to_string(i);
    std::string echoed;
    ASSERT_TRUE(RecvExactly(clients[i].get(), echoed, hello.size()));
    EXPECT_EQ(echoed, hello);
    EXPECT_TRUE(ReadsToEof(clients[i].get()));  // the server's FIN
  }
  clients.clear();  // our FIN lets the lingering server side close
  EXPECT_TRUE(stopped.WaitForNotificationWithTimeout(absl::Seconds(20)));
  stopper.join();
  const ReactorStats total = server->Stats().Total();
  EXPECT_EQ(total.open, 0u);
  EXPECT_EQ(total.closed_by_reason[static_cast<size_t>(CloseReason::kShutdown)], 0u);
}

TEST(ServerTest, StopCutsPeersThatNeverCloseAtTheDeadline) {
  ServerOptions options;
  options.address = *Address::Parse("127.0.0.1:0");
  options.workers = 1;
  options.drain_timeout = absl::Milliseconds(200);
  auto server = Server::Create(options, EchoHandlerFactory());
  ASSERT_TRUE(server.ok());
  (*server)->Start();
  Fd idle = Connect(**server);
  ASSERT_TRUE(WaitFor([&] { return (*server)->Stats().Total().open == 1; }));
  (*server)->Stop();  // the client never closes: the deadline must end it
  EXPECT_EQ((*server)->Stats().Total().open, 0u);
}

// Never consumes: waits for a frame end that never comes.
class HoardingHandler final : public ConnectionHandler {
 public:
  size_t OnData(Connection&, std::string_view) override { return 0; }
};

TEST(ServerTest, UnconsumedInputAboveTheLimitClosesTheConnection) {
  ServerOptions options;
  options.address = *Address::Parse("127.0.0.1:0");
  options.workers = 1;
  options.connection.max_input_bytes = 64 * 1024;
  auto server =
      Server::Create(options, [](Connection&) { return std::make_unique<HoardingHandler>(); });
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->Start();
  Fd fd = Connect(**server);
  const std::string chunk(256 * 1024, 'h');
  ::send(fd.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);  // may be cut short by the close
  EXPECT_TRUE(ReadsToEof(fd.get()));
  ASSERT_TRUE(WaitFor([&] { return (*server)->Stats().Total().closed == 1; }));
  EXPECT_EQ(
      (*server)->Stats().Total().closed_by_reason[static_cast<size_t>(CloseReason::kInputTooLarge)],
      1u);
}

TEST(ServerTest, ReusePortModeAcceptsOnEveryReactor) {
  ServerOptions options;
  options.address = *Address::Parse("127.0.0.1:0");
  options.workers = 4;
  options.accept_mode = AcceptMode::kReusePort;
  auto server = Server::Create(options, EchoHandlerFactory());
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->Start();
  std::vector<Fd> clients;
  for (int i = 0; i < 200; ++i) {
    clients.push_back(Connect(**server));
    const std::string ping = "ping " + std::to_string(i);
    ASSERT_TRUE(SendAll(clients.back().get(), ping.data(), ping.size()));
    std::string pong;
    ASSERT_TRUE(RecvExactly(clients.back().get(), pong, ping.size()));
    EXPECT_EQ(pong, ping);
  }
  // The kernel spreads by a hash of the 4-tuple: with 200 connections over
  // 4 listeners, each reactor gets some (all on one would be a 1-in-4^199 fluke).
  for (const ReactorStats& r : (*server)->Stats().reactors) EXPECT_GT(r.accepted, 0u);
  clients.clear();
  (*server)->Stop();
  EXPECT_EQ((*server)->Stats().Total().open, 0u);
}

TEST(ServerTest, ReusePortModeHonoursMaxConnections) {
  ServerOptions options;
  options.address = *Address::Parse("127.0.0.1:0");
  options.workers = 2;
  options.accept_mode = AcceptMode::kReusePort;
  options.max_connections = 3;
  auto server = Server::Create(options, EchoHandlerFactory());
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->Start();
  std::vector<Fd> held;
  for (int i = 0; i < 3; ++i) held.push_back(Connect(**server));
  ASSERT_TRUE(WaitFor([&] { return (*server)->Stats().Total().open == 3; }));
  Fd extra = Connect(**server);
  EXPECT_TRUE(ReadsToEof(extra.get()));
  EXPECT_EQ((*server)->Stats().rejected, 1u);
}

TEST(ServerTest, LeastLoadedBalanceFillsTheEmptiestReactor) {
  ServerOptions options;
  options.address = *Address::Parse("127.0.0.1:0");
  options.workers = 2;
  options.balance = Balance::kLeastLoaded;
  // Each connection is told the index of the reactor that owns it.
  auto server = Server::Create(
      options, [](Connection&) { return std::make_unique<testing::WhereHandler>(); });
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->Start();
  auto reactor_of = [](int fd) {
    std::string where;
    EXPECT_TRUE(RecvExactly(fd, where, 1));
    return where;
  };
  std::vector<Fd> on0, on1;
  for (int i = 0; i < 8; ++i) {
    Fd fd = Connect(**server);
    (reactor_of(fd.get()) == "0" ? on0 : on1).push_back(std::move(fd));
  }
  EXPECT_EQ(on0.size(), 4u);
  EXPECT_EQ(on1.size(), 4u);
  on0.clear();  // reactor 0 is now empty, reactor 1 holds 4
  ASSERT_TRUE(WaitFor([&] { return (*server)->Stats().reactors[0].open == 0; }));
  for (int i = 0; i < 4; ++i) {
    Fd fd = Connect(**server);
    EXPECT_EQ(reactor_of(fd.get()), "0") << "connection " << i;
    on0.push_back(std::move(fd));
  }
}

TEST(ListenerTest, EachRejectionAtTheLimitCountsTowardTheCallersBatch) {
  // A connect flood at max_connections: if one AcceptOne call rejected
  // connections until the backlog was empty, a flood could keep the
  // acceptor (or a reuse-port reactor) in that call forever, so Stop() and
  // established connections would wait.
  absl::StatusOr<Fd> listen_fd = ListenTcp(*Address::Parse("127.0.0.1:0"));
  ASSERT_TRUE(listen_fd.ok()) << listen_fd.status();
  const Address address = *LocalAddress(listen_fd->get());
  ASSERT_TRUE(SetNonBlocking(listen_fd->get()).ok());
  std::vector<Fd> clients;
  for (int i = 0; i < 20; ++i) clients.push_back(*ConnectTcpBlocking(address));
  Listener listener(listen_fd->get(), /*max_connections=*/1, [] { return uint64_t{1}; });
  Handoff handoff;
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(listener.AcceptOne(handoff), Listener::Result::kRejected) << i;
    EXPECT_EQ(listener.counters().rejected.load(), static_cast<uint64_t>(i + 1));
  }
  EXPECT_EQ(listener.AcceptOne(handoff), Listener::Result::kEmpty);
}

// A blocking listener without CLOEXEC, as systemd or another process hands
// one over: bound to 127.0.0.1:0 and listening.
Fd RawListener() {
  Fd fd(::socket(AF_INET, SOCK_STREAM, 0));
  const Address any = *Address::Parse("127.0.0.1:0");
  EXPECT_EQ(::bind(fd.get(), any.sockaddr_ptr(), any.length()), 0);
  EXPECT_EQ(::listen(fd.get(), 16), 0);
  return fd;
}

TEST(ServerTest, AdoptsAListeningSocketInsteadOfBinding) {
  Fd listener = RawListener();
  const Address bound = *LocalAddress(listener.get());
  const int raw = listener.get();
  ServerOptions options;
  options.address = *Address::Parse("127.0.0.1:1");  // ignored: never bound
  options.workers = 2;
  options.adopt_listen_fd = listener.Release();
  auto server = Server::Create(options, EchoHandlerFactory());
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->address().ToString(), bound.ToString());
  // Made non-blocking (the acceptor must never block) and close-on-exec.
  EXPECT_TRUE(::fcntl(raw, F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(::fcntl(raw, F_GETFD) & FD_CLOEXEC);
  (*server)->Start();
  for (int i = 0; i < 4; ++i) {
    Fd fd = Connect(**server);
    const std::string text = "adopted " + std::to_string(i);
    ASSERT_TRUE(SendAll(fd.get(), text.data(), text.size()));
    std::string got;
    ASSERT_TRUE(RecvExactly(fd.get(), got, text.size()));
    EXPECT_EQ(got, text);
  }
  (*server)->Stop();
}

TEST(ServerTest, StopLeavesAListenerSharedWithAnotherHolderListening) {
  // What a takeover relies on (core/ops/handoff.h): the old server stops
  // accepting and closes its descriptor, but never shuts the socket down,
  // so the other holder's copy (the new process) keeps it and its queue.
  Fd listener = RawListener();
  Fd other(::fcntl(listener.get(), F_DUPFD_CLOEXEC, 0));
  ASSERT_TRUE(other.valid());
  ServerOptions options;
  options.workers = 1;
  options.adopt_listen_fd = listener.Release();
  auto server = Server::Create(options, EchoHandlerFactory());
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->Start();
  const Address address = (*server)->address();
  (*server)->Stop();
  int accepting = 0;
  socklen_t len = sizeof(accepting);
  ASSERT_EQ(::getsockopt(other.get(), SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len), 0);
  EXPECT_EQ(accepting, 1);
  absl::StatusOr<Fd> client = ConnectTcpBlocking(address);
  ASSERT_TRUE(client.ok()) << client.status();
  pollfd p{other.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10'000), 1);
  Fd accepted(::accept4(other.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted.valid()) << std::strerror(errno);
}

TEST(ServerTest, AdoptRejectsASocketThatDoesNotListen) {
  Fd unbound(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int raw = unbound.get();
  ServerOptions options;
  options.workers = 1;
  options.adopt_listen_fd = unbound.Release();
  auto server = Server::Create(options, EchoHandlerFactory());
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(server.status().message().find("not a listening socket"), absl::string_view::npos)
      << server.status();
  // Owned from the call on: closed on the error too.
  EXPECT_EQ(::fcntl(raw, F_GETFD), -1);

  // A listening socket that is not TCP.
  Fd unix_listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;  // autobind: an abstract name of the kernel's choice
  ASSERT_EQ(::bind(unix_listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(sa_family_t)),
            0);
  ASSERT_EQ(::listen(unix_listener.get(), 1), 0);
  options.adopt_listen_fd = unix_listener.Release();
  server = Server::Create(options, EchoHandlerFactory());
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find("not a TCP"), absl::string_view::npos)
      << server.status();
}

TEST(ServerTest, AdoptRejectsReusePortMode) {
  ServerOptions options;
  options.workers = 2;
  options.accept_mode = AcceptMode::kReusePort;
  options.adopt_listen_fd = RawListener().Release();
  auto server = Server::Create(options, EchoHandlerFactory());
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(server.status().message().find("reuse-port"), absl::string_view::npos)
      << server.status();
}

}  // namespace
}  // namespace troupe
