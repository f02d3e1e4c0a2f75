// ServerOptions::transport with TLS (core/net/tls.h): a Server whose handlers
// see plaintext while the socket carries TLS, against an OpenSSL client the
// test drives itself (and echo-load's engine for the bulk check), with a
// throwaway self-signed certificate.
#include "core/net/tls.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "core/net/socket.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "load/load_client.h"
#include "tests/support/test_cert.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using testing::TestCert;
using testing::WaitFor;

// What the handlers of one server saw.
struct Seen {
  std::atomic<int> opened{0};
  std::atomic<int> closed{0};
  std::atomic<size_t> after_shutdown{0};  // bytes read after ShutdownWrite
  std::atomic<uint32_t> most_work{0};     // the most pending work seen at once
  // Set before the server starts: bytes each connection Sends while its
  // handshake is still under way (0: none), and how many connections did.
  size_t early_send = 0;
  std::atomic<int> early_sent{0};
  std::atomic<bool> big_sent{false};  // the "big\n" reply's Send returned
};

constexpr size_t kBigReply = 16 << 20;

// The bytes of the "big\n" reply: a pattern, so a lost or repeated record shows.
std::string BigReply() {
  std::string big(kBigReply, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i / 7) % 26);
  return big;
}

// Sends 256 KiB to `id` every millisecond while it is open: output that does
// not come from reading, to a peer that does not read.
void Flood(Reactor* reactor, ConnectionId id) {
  Connection* conn = reactor->Find(id);
  if (conn == nullptr || conn->closed()) return;
  conn->Send(std::string(256 << 10, 'f'));
  reactor->RunAfter(absl::Milliseconds(1), [reactor, id] { Flood(reactor, id); });
}

// Echoes every byte; "shut\n" makes it half-close instead (ShutdownWrite),
// after which it counts what it still reads. Commands at the start of the
// input: "big\n" replies with one 16 MiB Send, "flood\n" starts Flood,
// "pause\n" pauses reading for 200 ms (then says "resumed\n" and resumes),
// "work\n" is a request answered "done\n" 50 ms later as pending work.
class TlsEchoHandler final : public ConnectionHandler {
 public:
  explicit TlsEchoHandler(std::shared_ptr<Seen> seen) : seen_(std::move(seen)) {}
  void OnOpen(Connection&) override { seen_->opened.fetch_add(1); }
  size_t OnData(Connection& conn, std::string_view data) override {
    if (conn.write_shut()) {
      seen_->after_shutdown.fetch_add(data.size());
      return data.size();
    }
    if (data == "shut\n") {
      conn.Send("bye\n");
      conn.ShutdownWrite();
      return data.size();
    }
    if (data.starts_with("big\n")) {
      conn.Send(BigReply());
      seen_->big_sent.store(true);
      return 4;
    }
    if (data.starts_with("flood\n")) {
      Flood(&conn.reactor(), conn.id());
      return 6;
    }
    if (data.starts_with("pause\n")) {
      conn.PauseReading();
      conn.Send("paused\n");
      Reactor* reactor = &conn.reactor();
      const ConnectionId id = conn.id();
      reactor->RunAfter(absl::Milliseconds(200), [reactor, id] {
        if (Connection* c = reactor->Find(id); c != nullptr && !c->closed()) {
          c->Send("resumed\n");
          c->ResumeReading();
        }
      });
      return 6;  // what follows waits for the resume
    }
    if (data.starts_with("work\n")) {
      size_t used = 0;
      while (data.substr(used).starts_with("work\n") && !conn.work_full()) {
        used += 5;
        conn.AddPendingWork();
        uint32_t most = seen_->most_work.load();
        while (conn.pending_work() > most &&
               !seen_->most_work.compare_exchange_weak(most, conn.pending_work())) {
        }
        Reactor* reactor = &conn.reactor();
        const ConnectionId id = conn.id();
        reactor->RunAfter(absl::Milliseconds(50), [reactor, id] {
          if (Connection* c = reactor->Find(id); c != nullptr && !c->closed()) {
            c->Send("done\n");
            c->FinishPendingWork();
          }
        });
      }
      return used;  // at max_pending_work: the rest waits
    }
    conn.Send(data);
    return data.size();
  }
  void OnClose(Connection&, CloseReason) override { seen_->closed.fetch_add(1); }

 private:
  std::shared_ptr<Seen> seen_;
};

uint64_t Closed(const Server& server, CloseReason reason) {
  return server.Stats().Total().closed_by_reason[static_cast<size_t>(reason)];
}

// A blocking OpenSSL client with 10 s socket timeouts, so no read can hang
// the test.
class Client {
 public:
  // `handshake` false: TCP only, until Handshake().
  Client(const Address& address, SSL_CTX* ctx, bool handshake = true) {
    absl::StatusOr<Fd> fd = ConnectTcpBlocking(address);
    if (!fd.ok()) return;
    fd_ = *std::move(fd);
    timeval tv{10, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ssl_ = SSL_new(ctx);
    SSL_set_fd(ssl_, fd_.get());
    if (handshake) Handshake();
  }
  ~Client() { SSL_free(ssl_); }
  bool Handshake() {
    connected_ = SSL_connect(ssl_) == 1;
    ERR_clear_error();
    return connected_;
  }
  bool connected() const { return connected_; }
  int fd() const { return fd_.get(); }

  bool Write(std::string_view bytes) {
    return SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size())) ==
           static_cast<int>(bytes.size());
  }
  // One record each, all in one TCP segment (corked): the server feeds them
  // to its transport in one read.
  bool WriteRecords(std::initializer_list<std::string_view> records) {
    int on = 1;
    ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
    bool ok = true;
    for (std::string_view record : records) ok = ok && Write(record);
    int off = 0;
    ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_CORK, &off, sizeof(off));
    return ok;
  }
  // Exactly `n` bytes of plaintext, or nullopt (close, error, timeout).
  std::optional<std::string> Read(size_t n) {
    std::string out(n, '\0');
    size_t got = 0;
    while (got < n) {
      const int r = SSL_read(ssl_, out.data() + got, static_cast<int>(n - got));
      if (r <= 0) return std::nullopt;
      got += static_cast<size_t>(r);
    }
    return out;
  }
  // SSL_get_error of the next read: SSL_ERROR_ZERO_RETURN is close_notify.
  int NextReadError() {
    char c;
    const int r = SSL_read(ssl_, &c, 1);
    const int e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl_, r);
    ERR_clear_error();
    return e;
  }
  // After close_notify, the socket's own EOF: recv() returns 0.
  bool SocketEof() {
    char c;
    return ::recv(fd_.get(), &c, 1, 0) == 0;
  }

 private:
  Fd fd_;
  SSL* ssl_ = nullptr;
  bool connected_ = false;
};

class TlsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cert_.ok()) << cert_.error();
    client_ctx_ = SSL_CTX_new(TLS_client_method());
    ASSERT_EQ(SSL_CTX_load_verify_locations(client_ctx_, cert_.cert().c_str(), nullptr), 1);
    SSL_CTX_set_verify(client_ctx_, SSL_VERIFY_PEER, nullptr);
  }
  void TearDown() override { SSL_CTX_free(client_ctx_); }

  std::unique_ptr<Server> Start(ServerOptions options = {}) {
    absl::StatusOr<std::shared_ptr<TransportFactory>> tls =
        NewTlsServerFactory({.cert_file = cert_.cert(), .key_file = cert_.key()});
    EXPECT_TRUE(tls.ok()) << tls.status();
    if (!tls.ok()) return nullptr;
    options.address = *Address::Parse("127.0.0.1:0");
    if (options.workers == 0) options.workers = 1;
    options.transport = *tls;
    absl::StatusOr<std::unique_ptr<Server>> server =
        Server::Create(options, [seen = seen_](Connection& conn) {
          if (seen->early_send > 0) {
            // Right after the adoption, the handshake not begun.
            Reactor* reactor = &conn.reactor();
            const ConnectionId id = conn.id();
            reactor->RunAfter(absl::Milliseconds(1), [reactor, id, seen] {
              Connection* c = reactor->Find(id);
              if (c == nullptr || !c->handshaking()) return;
              c->Send(std::string(seen->early_send, 'e'));
              seen->early_sent.fetch_add(1);
            });
          }
          return std::make_unique<TlsEchoHandler>(seen);
        });
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return nullptr;
    (*server)->Start();
    return *std::move(server);
  }

  TestCert cert_;
  SSL_CTX* client_ctx_ = nullptr;
  std::shared_ptr<Seen> seen_ = std::make_shared<Seen>();
};

TEST_F(TlsServerTest, HandlerSeesPlaintextAndOpensAfterTheHandshake) {
  std::unique_ptr<Server> server = Start();
  ASSERT_NE(server, nullptr);
  {
    Client client(server->address(), client_ctx_);
    ASSERT_TRUE(client.connected());
    ASSERT_TRUE(client.Write("hello\nworld\n"));
    EXPECT_EQ(client.Read(12), "hello\nworld\n");
    EXPECT_EQ(seen_->opened.load(), 1);
    // TLS on the wire: more bytes went in than the 12 of plaintext.
    EXPECT_GT(server->Stats().Total().bytes_in, 12u);
  }  // closed before the drain, which would otherwise linger for our FIN
  server->Stop();
}

// echo-load's engine, verifying every byte: 100,000-byte messages cross many
// records, and a 64 KiB high watermark pauses reading with ciphertext left in
// the transport; small pipelined messages share records.
TEST_F(TlsServerTest, EchoLoadVerifiesEveryByteThroughWatermarks) {
  ServerOptions options;
  options.connection.high_watermark = 64 << 10;
  options.connection.low_watermark = 16 << 10;
  options.connection.max_output_bytes = 16 << 20;
  std::unique_ptr<Server> server = Start(options);
  ASSERT_NE(server, nullptr);
  for (size_t size : {size_t{100000}, size_t{64}}) {
    LoadOptions load;
    load.target = server->address();
    load.connections = 4;
    load.threads = 1;
    load.message_size = size;
    load.pipeline = 16;
    load.duration = absl::Milliseconds(500);
    load.tls = true;
    load.tls_ca_file = cert_.cert();
    load.tls_server_name = "localhost";
    absl::StatusOr<LoadReport> report = RunLoad(load);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->ok()) << size << ": " << absl::StrJoin(report->first_errors, "; ");
    EXPECT_GT(report->messages, 0u);
  }
  server->Stop();
}

TEST_F(TlsServerTest, BadHandshakesCloseOnlyTheirOwnConnection) {
  std::unique_ptr<Server> server = Start();
  ASSERT_NE(server, nullptr);
  auto good = std::make_unique<Client>(server->address(), client_ctx_);
  ASSERT_TRUE(good->connected());

  // A plaintext client: closed at its first bytes.
  absl::StatusOr<Fd> plain = ConnectTcpBlocking(server->address());
  ASSERT_TRUE(plain.ok());
  const std::string request = "GET / HTTP/1.0\r\n\r\n";
  ASSERT_EQ(::send(plain->get(), request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  // A ClientHello cut short: a record header announcing 512 bytes, 1 sent.
  absl::StatusOr<Fd> truncated = ConnectTcpBlocking(server->address());
  ASSERT_TRUE(truncated.ok());
  const std::string hello("\x16\x03\x01\x02\x00\x01", 6);
  ASSERT_EQ(::send(truncated->get(), hello.data(), hello.size(), MSG_NOSIGNAL), 6);
  truncated->Reset();

  ASSERT_TRUE(WaitFor([&] { return Closed(*server, CloseReason::kTlsHandshakeFailed) == 2; },
                      absl::Seconds(10)));
  char c;
  timeval tv{10, 0};
  ::setsockopt(plain->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  EXPECT_LE(::recv(plain->get(), &c, 1, 0), 0);  // closed (FIN or reset), not left hanging

  // The good connection never noticed.
  ASSERT_TRUE(good->Write("still here\n"));
  EXPECT_EQ(good->Read(11), "still here\n");
  EXPECT_EQ(seen_->opened.load(), 1);  // the bad ones never had OnOpen
  good.reset();
  plain->Reset();
  server->Stop();
  EXPECT_EQ(seen_->closed.load(), 1);  // nor OnClose
}

TEST_F(TlsServerTest, SilentClientIsClosedAtTheHandshakeTimeout) {
  ServerOptions options;
  options.connection.handshake_timeout = absl::Milliseconds(200);
  std::unique_ptr<Server> server = Start(options);
  ASSERT_NE(server, nullptr);
  absl::StatusOr<Fd> silent = ConnectTcpBlocking(server->address());
  ASSERT_TRUE(silent.ok());
  timeval tv{10, 0};
  ::setsockopt(silent->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char c;
  const absl::Time start = absl::Now();
  EXPECT_EQ(::recv(silent->get(), &c, 1, 0), 0);  // the server's FIN
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(WaitFor([&] { return Closed(*server, CloseReason::kTlsHandshakeTimeout) == 1; },
                      absl::Seconds(10)));
  EXPECT_EQ(seen_->opened.load(), 0);
  server->Stop();
  EXPECT_EQ(seen_->closed.load(), 0);
}

// Server::Stop drains over TLS: every echo, then close_notify, then FIN.
TEST_F(TlsServerTest, StopSendsEveryEchoThenCloseNotifyThenEof) {
  std::unique_ptr<Server> server = Start();
  ASSERT_NE(server, nullptr);
  auto client = std::make_unique<Client>(server->address(), client_ctx_);
  ASSERT_TRUE(client->connected());
  const std::string lines = "one\ntwo\nthree\n";
  ASSERT_TRUE(client->Write(lines));
  ASSERT_EQ(client->Read(lines.size()), lines);
  std::thread stopper([&] { server->Stop(); });
  EXPECT_EQ(client->NextReadError(), SSL_ERROR_ZERO_RETURN);  // close_notify
  EXPECT_TRUE(client->SocketEof());                           // then the FIN
  client.reset();  // our FIN ends the server's linger, and so the drain
  stopper.join();
  EXPECT_EQ(Closed(*server, CloseReason::kFlushedClose), 1u);
}

// ShutdownWrite over TLS: close_notify, then FIN, while reading goes on.
TEST_F(TlsServerTest, ShutdownWriteSendsCloseNotifyThenFinAndKeepsReading) {
  std::unique_ptr<Server> server = Start();
  ASSERT_NE(server, nullptr);
  auto client = std::make_unique<Client>(server->address(), client_ctx_);
  ASSERT_TRUE(client->connected());
  ASSERT_TRUE(client->Write("shut\n"));
  EXPECT_EQ(client->Read(4), "bye\n");
  EXPECT_EQ(client->NextReadError(), SSL_ERROR_ZERO_RETURN);
  EXPECT_TRUE(client->SocketEof());
  // Our side still writes, and the server still reads and decrypts.
  ASSERT_TRUE(client->Write("after\n"));
  EXPECT_TRUE(WaitFor([&] { return seen_->after_shutdown.load() == 6; }, absl::Seconds(10)));
  EXPECT_EQ(seen_->closed.load(), 0);
  client.reset();
  server->Stop();
}

// One 16 MiB Send with the default limits (1 MiB high watermark, 4 MiB max
// output) to a client that reads it all: never cut as a slow consumer, though
// TLS hands it to the socket in many pieces.
TEST_F(TlsServerTest, OneLargeReplyToAPeerThatKeepsUpIsNotCut) {
  std::unique_ptr<Server> server = Start();
  ASSERT_NE(server, nullptr);
  {
    Client client(server->address(), client_ctx_);
    ASSERT_TRUE(client.connected());
    ASSERT_TRUE(client.Write("big\n"));
    // Read only once the Send is over: most of it then waits in the
    // server's output, which is the handler's own message, not a backlog.
    ASSERT_TRUE(WaitFor([&] { return seen_->big_sent.load(); }, absl::Seconds(10)));
    std::optional<std::string> reply = client.Read(kBigReply);
    ASSERT_TRUE(reply.has_value()) << "cut after the server sent part of it";
    EXPECT_TRUE(*reply == BigReply());
    // Still open, and serving.
    ASSERT_TRUE(client.Write("again\n"));
    EXPECT_EQ(client.Read(6), "again\n");
  }
  server->Stop();
  EXPECT_EQ(Closed(*server, CloseReason::kSlowConsumer), 0u);
}

// A peer that reads nothing while timer output piles up is cut, as in
// plaintext: already behind, and more would pass max_output_bytes.
TEST_F(TlsServerTest, PeerAlreadyBehindIsCutAsSlowConsumer) {
  std::unique_ptr<Server> server = Start();
  ASSERT_NE(server, nullptr);
  Client client(server->address(), client_ctx_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Write("flood\n"));
  EXPECT_TRUE(
      WaitFor([&] { return Closed(*server, CloseReason::kSlowConsumer) == 1; }, absl::Seconds(10)));
  server->Stop();
  EXPECT_EQ(seen_->closed.load(), 1);
}

// Bytes decrypted (or fed) while the handler paused reading are handed over
// at ResumeReading, though no new byte (no new epoll edge) comes: whether
// they wait as records in the transport or as plaintext left unconsumed.
TEST_F(TlsServerTest, PauseReadingHoldsDecryptedBytesUntilResume) {
  std::unique_ptr<Server> server = Start();
  ASSERT_NE(server, nullptr);
  {
    Client client(server->address(), client_ctx_);
    ASSERT_TRUE(client.connected());
    // Separate records, one segment: the second stays in the transport.
    ASSERT_TRUE(client.WriteRecords({"pause\n", "after\n"}));
    EXPECT_EQ(client.Read(7), "paused\n");
    EXPECT_EQ(client.Read(8), "resumed\n");  // nothing was echoed while paused
    EXPECT_EQ(client.Read(6), "after\n");
    // One record: the rest of it waits unconsumed.
    ASSERT_TRUE(client.Write("pause\nmore\n"));
    EXPECT_EQ(client.Read(7), "paused\n");
    EXPECT_EQ(client.Read(8), "resumed\n");
    EXPECT_EQ(client.Read(5), "more\n");
  }
  server->Stop();
}

// At max_pending_work no more input is handed over (records wait in the
// transport, plaintext in the input) until work replies; then all of it is.
TEST_F(TlsServerTest, MaxPendingWorkHoldsInputUntilWorkReplies) {
  ServerOptions options;
  options.connection.max_pending_work = 2;
  std::unique_ptr<Server> server = Start(options);
  ASSERT_NE(server, nullptr);
  {
    Client client(server->address(), client_ctx_);
    ASSERT_TRUE(client.connected());
    ASSERT_TRUE(client.WriteRecords({"work\n", "work\n", "work\n", "work\n", "work\n"}));
    EXPECT_EQ(client.Read(25), "done\ndone\ndone\ndone\ndone\n");
    ASSERT_TRUE(client.Write("work\nwork\nwork\nwork\nwork\n"));
    EXPECT_EQ(client.Read(25), "done\ndone\ndone\ndone\ndone\n");
    ASSERT_TRUE(client.Write("echo\n"));
    EXPECT_EQ(client.Read(5), "echo\n");
  }
  server->Stop();
  EXPECT_EQ(seen_->most_work.load(), 2u);  // reached, never passed
}

// Plaintext Sent during the handshake waits in the transport: within
// max_output_bytes it goes out once the handshake is done, beyond it the
// connection is cut as a slow consumer (it is output queued all the same).
TEST_F(TlsServerTest, SendDuringTheHandshakeIsHeldWithinMaxOutputBytes) {
  seen_->early_send = 100 << 10;
  std::unique_ptr<Server> server = Start();
  ASSERT_NE(server, nullptr);
  {
    Client client(server->address(), client_ctx_, /*handshake=*/false);
    ASSERT_TRUE(WaitFor([&] { return seen_->early_sent.load() == 1; }, absl::Seconds(10)));
    ASSERT_TRUE(client.Handshake());
    EXPECT_EQ(client.Read(100 << 10), std::string(100 << 10, 'e'));
  }
  server->Stop();
  EXPECT_EQ(Closed(*server, CloseReason::kSlowConsumer), 0u);
}

TEST_F(TlsServerTest, SendDuringTheHandshakeBeyondMaxOutputBytesIsCut) {
  seen_->early_send = 5 << 20;  // the default max_output_bytes is 4 MiB
  std::unique_ptr<Server> server = Start();
  ASSERT_NE(server, nullptr);
  Client client(server->address(), client_ctx_, /*handshake=*/false);
  EXPECT_TRUE(
      WaitFor([&] { return Closed(*server, CloseReason::kSlowConsumer) == 1; }, absl::Seconds(10)));
  server->Stop();
  EXPECT_EQ(seen_->opened.load(), 0);
}

// A client still in its handshake when the drain starts completes it, has its
// first request answered, then gets close_notify and the FIN: no FIN inside
// the handshake.
TEST_F(TlsServerTest, DrainLetsAHandshakeInProgressFinishAndServesIt) {
  std::unique_ptr<Server> server = Start();
  ASSERT_NE(server, nullptr);
  auto client = std::make_unique<Client>(server->address(), client_ctx_, /*handshake=*/false);
  ASSERT_TRUE(WaitFor([&] { return server->Stats().Total().accepted == 1; }, absl::Seconds(10)));
  std::thread stopper([&] { server->Stop(); });
  // The drain has begun once the listener is gone.
  EXPECT_TRUE(
      WaitFor([&] { return !ConnectTcpBlocking(server->address()).ok(); }, absl::Seconds(10)));
  ASSERT_TRUE(client->Handshake());
  ASSERT_TRUE(client->Write("hello\n"));
  EXPECT_EQ(client->Read(6), "hello\n");
  EXPECT_EQ(client->NextReadError(), SSL_ERROR_ZERO_RETURN);  // close_notify
  EXPECT_TRUE(client->SocketEof());                           // then the FIN
  client.reset();
  stopper.join();
  EXPECT_EQ(seen_->opened.load(), 1);
  EXPECT_EQ(Closed(*server, CloseReason::kTlsHandshakeFailed), 0u);
}

TEST(TlsOptionsTest, ProxyProtocolWithTlsIsRejected) {
  TestCert cert;
  ASSERT_TRUE(cert.ok()) << cert.error();
  ServerOptions options;
  options.address = *Address::Parse("127.0.0.1:0");
  options.transport = *NewTlsServerFactory({.cert_file = cert.cert(), .key_file = cert.key()});
  options.proxy_protocol = true;
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Create(options, [](Connection&) { return nullptr; });
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(server.status().message(), "proxy_protocol"));
}

TEST(TlsOptionsTest, BadFilesAreNamed) {
  TestCert cert;
  TestCert other("other");
  ASSERT_TRUE(cert.ok() && other.ok());
  absl::StatusOr<std::shared_ptr<TransportFactory>> missing =
      NewTlsServerFactory({.cert_file = cert.dir() + "/nope.pem", .key_file = cert.key()});
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::StrContains(missing.status().message(), cert.dir() + "/nope.pem"))
      << missing.status();
  absl::StatusOr<std::shared_ptr<TransportFactory>> mismatched =
      NewTlsServerFactory({.cert_file = cert.cert(), .key_file = other.key()});
  ASSERT_FALSE(mismatched.ok());
  EXPECT_TRUE(absl::StrContains(mismatched.status().message(), other.key())) << mismatched.status();
  EXPECT_TRUE(absl::StrContains(mismatched.status().message(), "does not match"))
      << mismatched.status();
  absl::StatusOr<std::shared_ptr<TransportFactory>> not_pem =
      NewTlsServerFactory({.cert_file = cert.key(), .key_file = cert.key()});
  ASSERT_FALSE(not_pem.ok());
  EXPECT_TRUE(absl::StrContains(not_pem.status().message(), cert.key())) << not_pem.status();
}

}  // namespace
}  // namespace troupe
