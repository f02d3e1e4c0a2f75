// Zero-downtime restart (core/ops/handoff.h) as an operator does it: A runs
// with --handoff-socket, B starts with --takeover, A drains and exits 0.
// Under a connection churn that never pauses, no connect may be refused and
// no byte lost; connections that were on A get their echoes and a clean FIN.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/net/socket.h"
#include "core/ops/handoff.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using ::troupe::testing::BinPath;
using ::troupe::testing::ProgramResult;
using ::troupe::testing::RunProgram;
using ::troupe::testing::Subprocess;
using ::troupe::testing::WaitFor;

constexpr absl::Duration kTimeout = absl::Seconds(30);

// A fresh directory for the handoff socket, removed afterwards.
class SocketDir {
 public:
  SocketDir() {
    char dir[] = "/tmp/troupe-handoff-XXXXXX";
    if (::mkdtemp(dir) != nullptr) dir_ = dir;
  }
  ~SocketDir() {
    ::unlink(path().c_str());
    ::rmdir(dir_.c_str());
  }
  std::string path() const { return dir_ + "/handoff.sock"; }

 private:
  std::string dir_;
};

// Starts echo-cluster with `flags`; reads the port from its first line.
struct Cluster {
  std::unique_ptr<Subprocess> process;
  int port = 0;
};
Cluster Start(const std::vector<std::string>& flags) {
  Cluster c;
  std::vector<std::string> argv = {BinPath("echo-cluster")};
  argv.insert(argv.end(), flags.begin(), flags.end());
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(argv);
  if (!p.ok()) {
    ADD_FAILURE() << p.status();
    return c;
  }
  c.process = *std::move(p);
  c.port = testing::ReadListeningPort(*c.process, kTimeout);
  return c;
}

// A blocking client socket whose every call gives up after 10 s.
absl::StatusOr<Fd> Dial(int port) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket");
  timeval tv{10, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));  // bounds connect too
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const Address to = *Address::FromHostPort("127.0.0.1", static_cast<uint16_t>(port));
  if (::connect(fd.get(), to.sockaddr_ptr(), to.length()) != 0) {
    return absl::ErrnoToStatus(errno, "connect");
  }
  return fd;
}

// Sends `text` and reads it back; an error says what went wrong.
absl::Status Exchange(int fd, const std::string& text) {
  if (::send(fd, text.data(), text.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(text.size())) {
    return absl::ErrnoToStatus(errno, "send");
  }
  std::string got;
  char buf[4096];
  while (got.size() < text.size()) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat("recv after ", got.size()));
    if (n == 0) return absl::DataLossError(absl::StrCat("EOF after ", got.size(), " bytes"));
    got.append(buf, static_cast<size_t>(n));
  }
  if (got != text) return absl::DataLossError("echo differs");
  return absl::OkStatus();
}

// Connections opened and closed back to back, each echoing one line,
// counted by the phase of the restart they began in.
class Churn {
 public:
  enum Phase { kBefore, kDuring, kAfter, kPhases };
  Churn(int port, int threads) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, port, t] { Loop(port, t); });
    }
  }
  ~Churn() { Stop(); }
  void set_phase(Phase p) { phase_.store(p); }
  uint64_t done(Phase p) const { return done_[p].load(); }
  void Stop() {
    stop_.store(true);
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }
  uint64_t failures() const { return failures_.load(); }
  std::string first_failure() const { return first_failure_; }

 private:
  void Loop(int port, int t) {
    for (uint64_t i = 0; !stop_.load(); ++i) {
      const Phase phase = phase_.load();
      const std::string line = absl::StrCat("churn ", t, " ", i, "\n");
      absl::StatusOr<Fd> fd = Dial(port);
      absl::Status s = fd.ok() ? Exchange(fd->get(), line) : fd.status();
      if (!s.ok()) {
        if (failures_.fetch_add(1) == 0) first_failure_ = s.ToString();
        continue;
      }
      done_[phase].fetch_add(1);
    }
  }

  std::atomic<Phase> phase_{kBefore};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> done_[kPhases] = {};
  std::atomic<uint64_t> failures_{0};
  std::string first_failure_;  // written once, by the first failing thread
  std::vector<std::thread> threads_;
};

TEST(HandoffProcessTest, TakeoverUnderChurnRefusesNothingAndLosesNoByte) {
  SocketDir dir;
  // --defer-accept: A only ever accepts a connection whose bytes are there,
  // so its drain answers all it accepted (docs/deploy.md).
  Cluster a =
      Start({"--port=0", "--workers=2", "--defer-accept=5s", "--handoff-socket=" + dir.path()});
  ASSERT_GT(a.port, 0);

  // Long-lived connections on A: each echoes 3 x 1 KiB before the restart.
  std::vector<Fd> long_lived;
  for (int c = 0; c < 16; ++c) {
    absl::StatusOr<Fd> fd = Dial(a.port);
    ASSERT_TRUE(fd.ok()) << fd.status();
    for (int k = 0; k < 3; ++k) {
      ASSERT_TRUE(
          Exchange(fd->get(), std::string(1024, static_cast<char>('a' + (c + k) % 26))).ok());
    }
    long_lived.push_back(*std::move(fd));
  }

  Churn churn(a.port, 2);
  ASSERT_TRUE(WaitFor([&] { return churn.done(Churn::kBefore) >= 200; }, kTimeout))
      << churn.first_failure();

  churn.set_phase(Churn::kDuring);
  Cluster b = Start({"--workers=2", "--takeover=" + dir.path()});
  ASSERT_EQ(b.port, a.port) << "B must serve the very socket A listened on";

  // A drains: every long-lived connection gets a clean FIN (EOF, not a
  // reset) with nothing unanswered; we close ours, and A can finish.
  for (Fd& fd : long_lived) {
    char byte;
    const ssize_t n = ::recv(fd.get(), &byte, 1, 0);
    EXPECT_EQ(n, 0) << (n < 0 ? std::strerror(errno) : "unexpected byte");
    fd.Reset();
  }
  absl::StatusOr<int> a_code = a.process->Wait(kTimeout);
  ASSERT_TRUE(a_code.ok()) << a_code.status();
  EXPECT_EQ(*a_code, 0);

  churn.set_phase(Churn::kAfter);
  EXPECT_TRUE(WaitFor([&] { return churn.done(Churn::kAfter) >= 200; }, kTimeout));
  churn.Stop();
  EXPECT_EQ(churn.failures(), 0u) << "first: " << churn.first_failure();
  EXPECT_GT(churn.done(Churn::kDuring), 0u);
  EXPECT_GE(churn.done(Churn::kAfter), 200u);

  absl::StatusOr<std::string> a_err = a.process->ReadAllStderr(kTimeout);
  ASSERT_TRUE(a_err.ok());
  EXPECT_TRUE(absl::StrContains(*a_err, absl::StrCat("pid ", b.process->pid(), " serves")))
      << *a_err;

  // B serves alone, and offers the socket for the next restart.
  absl::StatusOr<Fd> fd = Dial(b.port);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_TRUE(Exchange(fd->get(), "b alone\n").ok());
  fd->Reset();
  struct stat st {};
  EXPECT_EQ(::stat(dir.path().c_str(), &st), 0) << "B must offer the handoff socket again";
  ASSERT_TRUE(b.process->Signal(SIGTERM).ok());
  absl::StatusOr<int> b_code = b.process->Wait(kTimeout);
  ASSERT_TRUE(b_code.ok()) << b_code.status();
  EXPECT_EQ(*b_code, 0);
  absl::StatusOr<std::string> b_err = b.process->ReadAllStderr(kTimeout);
  ASSERT_TRUE(b_err.ok());
  EXPECT_TRUE(absl::StrContains(*b_err, absl::StrCat("pid ", a.process->pid(), " is draining")))
      << *b_err;
}

// Established TCP connections whose local port is `port` (either side of a
// loopback pair can be ours; this counts the server's side), from
// /proc/net/tcp: what a test can see of a client it did not write.
int EstablishedOnPort(int port) {
  FILE* f = ::fopen("/proc/net/tcp", "r");
  if (f == nullptr) return -1;
  int count = 0;
  char line[512];
  while (::fgets(line, sizeof(line), f) != nullptr) {
    unsigned local_port = 0;
    unsigned state = 0;
    // "  0: 0100007F:1F5B 0100007F:C0A2 01 ..."
    if (std::sscanf(line, " %*d: %*8X:%X %*8X:%*X %X", &local_port, &state) == 2 &&
        static_cast<int>(local_port) == port && state == 1) {
      ++count;
    }
  }
  ::fclose(f);
  return count;
}

// The issue's own test: echo-load keeps its connections busy and reopens
// each one the old process closes (--reconnect); across the takeover no
// reconnect is refused, every echo owed comes back, and the connections A
// drained reopen on B, on the very same socket.
TEST(HandoffProcessTest, EchoLoadRidesATakeoverWithNoRefusalAndNoError) {
  SocketDir dir;
  Cluster a =
      Start({"--port=0", "--workers=2", "--defer-accept=5s", "--handoff-socket=" + dir.path()});
  ASSERT_GT(a.port, 0);
  absl::StatusOr<std::unique_ptr<Subprocess>> load =
      Subprocess::Start({BinPath("echo-load"), "--port", absl::StrCat(a.port), "--connections",
                         "16", "--pipeline", "4", "--duration", "4s", "--warmup", "0s",
                         "--reconnect", "--json", "--progress-interval", "0"});
  ASSERT_TRUE(load.ok()) << load.status();
  ASSERT_TRUE(WaitFor([&] { return EstablishedOnPort(a.port) >= 16; }, kTimeout));

  Cluster b = Start({"--workers=2", "--defer-accept=5s", "--takeover=" + dir.path()});
  ASSERT_EQ(b.port, a.port);
  absl::StatusOr<int> a_code = a.process->Wait(kTimeout);
  ASSERT_TRUE(a_code.ok()) << a_code.status();
  EXPECT_EQ(*a_code, 0);

  absl::StatusOr<int> load_code = (*load)->Wait(kTimeout);
  ASSERT_TRUE(load_code.ok()) << load_code.status();
  absl::StatusOr<std::string> report = (*load)->ReadAllStdout(kTimeout);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(*load_code, 0) << *report;
  EXPECT_TRUE(absl::StrContains(*report, "\"errors\":{\"total\":0,")) << *report;
  EXPECT_TRUE(absl::StrContains(*report, "\"reconnect_failures\":0,")) << *report;
  EXPECT_TRUE(absl::StrContains(*report, "\"down\":0,") ||
              absl::StrContains(*report, "\"down\":0}"))
      << *report;
  // Every connection A had was drained and reopened on B.
  const size_t at = report->find("\"reconnections\":");
  ASSERT_NE(at, std::string::npos) << *report;
  int reconnections = 0;
  ASSERT_TRUE(
      absl::SimpleAtoi(report->substr(at + 16, report->find(',', at) - at - 16), &reconnections))
      << *report;
  EXPECT_GE(reconnections, 16) << *report;

  ASSERT_TRUE(b.process->Signal(SIGTERM).ok());
  absl::StatusOr<int> b_code = b.process->Wait(kTimeout);
  ASSERT_TRUE(b_code.ok()) << b_code.status();
  EXPECT_EQ(*b_code, 0);
}

TEST(HandoffProcessTest, TakerThatGivesUpLeavesTheOldOneServing) {
  SocketDir dir;
  Cluster a = Start({"--port=0", "--workers=1", "--handoff-socket=" + dir.path()});
  ASSERT_GT(a.port, 0);
  {
    // Receives the socket, then goes away without READY (a crash, say).
    absl::StatusOr<Takeover> taker = Takeover::Receive(dir.path(), kTimeout);
    ASSERT_TRUE(taker.ok()) << taker.status();
    EXPECT_EQ(taker->from_pid(), a.process->pid());
    EXPECT_EQ(taker->address(), absl::StrCat("127.0.0.1:", a.port));
  }
  absl::StatusOr<Fd> fd = Dial(a.port);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_TRUE(Exchange(fd->get(), "still here\n").ok());
  fd->Reset();
  ASSERT_TRUE(a.process->Signal(SIGTERM).ok());
  absl::StatusOr<int> code = a.process->Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  struct stat st {};
  EXPECT_NE(::stat(dir.path().c_str(), &st), 0) << "a stopped server unlinks its handoff socket";
}

TEST(HandoffProcessTest, TakeoverWithNoServerThereExitsOneNamingThePath) {
  SocketDir dir;
  ProgramResult r = RunProgram({BinPath("echo-cluster"), "--takeover=" + dir.path()});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "takeover " + dir.path())) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "No such file or directory")) << r.output;
}

TEST(HandoffProcessTest, TakeoverFromSomethingElseExitsOneNamingThePath) {
  SocketDir dir;
  const std::string path = dir.path();
  Fd server(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  ASSERT_EQ(::bind(server.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(server.get(), 1), 0);
  // Answers the first connection with something that is not the greeting.
  std::thread impostor([&] {
    pollfd p{server.get(), POLLIN, 0};
    if (::poll(&p, 1, 30'000) != 1) return;
    Fd conn(::accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
    const std::string reply = "HTTP/1.1 400 Bad Request\r\n\r\n";
    (void)!::send(conn.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
  });
  ProgramResult r = RunProgram({BinPath("echo-cluster"), "--takeover=" + path});
  impostor.join();
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "takeover " + path + ": not a troupe handoff"))
      << r.output;
}

// The socket a HandoffServer offers in the tests below (never listened on:
// Create only duplicates it).
Fd AnySocket() { return Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)); }

TEST(HandoffServerTest, RefusesAndKeepsAFileThatIsNotASocket) {
  SocketDir dir;
  const std::string path = dir.path();
  {
    Fd file(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    ASSERT_TRUE(file.valid()) << std::strerror(errno);
    ASSERT_EQ(::write(file.get(), "data", 4), 4);
  }
  Fd sock = AnySocket();
  auto offer = HandoffServer::Create(path, sock.get(), "127.0.0.1:1", nullptr);
  ASSERT_FALSE(offer.ok());
  EXPECT_TRUE(absl::StrContains(offer.status().message(), path)) << offer.status();
  EXPECT_TRUE(absl::StrContains(offer.status().message(), "not a socket")) << offer.status();
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0) << "the file was removed";
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_size, 4);
}

TEST(HandoffServerTest, RefusesThePathOfARunningOne) {
  SocketDir dir;
  const std::string path = dir.path();
  Fd sock = AnySocket();
  auto first = HandoffServer::Create(path, sock.get(), "127.0.0.1:1", nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  (*first)->Start();
  struct stat before {};
  ASSERT_EQ(::lstat(path.c_str(), &before), 0);
  auto second = HandoffServer::Create(path, sock.get(), "127.0.0.1:1", nullptr);
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::StrContains(second.status().message(), path)) << second.status();
  EXPECT_TRUE(absl::StrContains(second.status().message(), "in use by a running server"))
      << second.status();
  struct stat after {};
  ASSERT_EQ(::lstat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "the running server's socket was replaced";
  (*first)->Stop();
}

TEST(HandoffServerTest, ReplacesAStaleSocket) {
  SocketDir dir;
  const std::string path = dir.path();
  {
    Fd stale(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    ASSERT_EQ(::bind(stale.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }  // closed: the file stays, nobody answers on it
  Fd sock = AnySocket();
  auto offer = HandoffServer::Create(path, sock.get(), "127.0.0.1:1", nullptr);
  ASSERT_TRUE(offer.ok()) << offer.status();
}

TEST(HandoffServerTest, OnlyOurUserOrRootIsBelieved) {
  const uid_t self = ::geteuid();
  ucred peer{};
  peer.pid = 42;
  peer.uid = self;
  EXPECT_TRUE(CheckHandoffPeer(peer, self, "takeover /p").ok());
  peer.uid = 0;
  EXPECT_TRUE(CheckHandoffPeer(peer, self, "takeover /p").ok());
  peer.uid = self + 1;
  absl::Status s = CheckHandoffPeer(peer, self, "takeover /p");
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::StartsWith(s.message(), "takeover /p: ")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), absl::StrCat("uid ", self + 1))) << s;
}

TEST(HandoffServerTest, TakeoverConnectIsBoundedByTheTimeout) {
  // A listener that never accepts, its backlog full: a blocking connect()
  // would wait for good; Receive must give up at its timeout.
  SocketDir dir;
  const std::string path = dir.path();
  Fd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.get(), 0), 0);
  std::vector<Fd> fillers;
  for (int i = 0; i < 64; ++i) {
    Fd c(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (::connect(c.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ASSERT_EQ(errno, EAGAIN) << std::strerror(errno);
      break;
    }
    fillers.push_back(std::move(c));
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<Takeover> taker = Takeover::Receive(path, absl::Milliseconds(300));
  ASSERT_FALSE(taker.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_TRUE(absl::StrContains(taker.status().message(), "takeover " + path)) << taker.status();
}

TEST(HandoffProcessTest, ReusePortModeCannotHandOff) {
  SocketDir dir;
  ProgramResult r = RunProgram({BinPath("echo-cluster"), "--port=0", "--accept-mode=reuseport",
                                "--handoff-socket=" + dir.path()});
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "--accept-mode=acceptor")) << r.output;
}

}  // namespace
}  // namespace troupe
