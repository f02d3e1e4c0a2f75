// The accept step on its own: a real listening socket on loopback, a
// Listener, and clients the test connects.
#include "core/loop/listener.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "core/net/socket.h"
#include "gtest/gtest.h"

namespace troupe {
namespace {

struct Listening {
  Fd fd;
  Address address;
};

Listening Listen() {
  absl::StatusOr<Fd> fd = ListenTcp(*Address::Parse("127.0.0.1:0"));
  EXPECT_TRUE(fd.ok()) << fd.status();
  Address address = *LocalAddress(fd->get());
  EXPECT_TRUE(SetNonBlocking(fd->get()).ok());
  return {std::move(*fd), address};
}

TEST(ListenerTest, EmptyBacklogSaysEmpty) {
  Listening l = Listen();
  Listener listener(l.fd.get(), 0, nullptr);
  Handoff handoff;
  EXPECT_EQ(listener.AcceptOne(handoff), Listener::Result::kEmpty);
  EXPECT_EQ(listener.counters().accepted.load(), 0u);
}

TEST(ListenerTest, AdmitsANonBlockingSocketWithNoDelayAndThePeersAddress) {
  Listening l = Listen();
  Fd client = *ConnectTcpBlocking(l.address);
  const Address client_address = *LocalAddress(client.get());
  Listener listener(l.fd.get(), 0, nullptr);
  Handoff handoff;
  ASSERT_EQ(listener.AcceptOne(handoff), Listener::Result::kAdmitted);
  Fd accepted(handoff.fd);
  EXPECT_EQ(handoff.peer.ToString(), client_address.ToString());
  EXPECT_TRUE(::fcntl(accepted.get(), F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(::fcntl(accepted.get(), F_GETFD) & FD_CLOEXEC);
  int nodelay = 0;
  socklen_t len = sizeof(nodelay);
  ASSERT_EQ(::getsockopt(accepted.get(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
  EXPECT_EQ(nodelay, 1);
  EXPECT_EQ(listener.counters().accepted.load(), 1u);
  EXPECT_EQ(listener.AcceptOne(handoff), Listener::Result::kEmpty);
}

TEST(ListenerTest, OutOfDescriptorsItShedsOneConnectionCountsItAndSaysPause) {
  Listening l = Listen();
  Fd client = *ConnectTcpBlocking(l.address);
  Listener listener(l.fd.get(), 0, nullptr);  // holds its spare descriptor now
  // Use up every descriptor left under a lowered soft limit.
  rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  std::vector<Fd> filler;
  const int probe = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(probe, 0);
  ::close(probe);
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(probe + 8);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  while (true) {
    Fd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) break;
    filler.push_back(std::move(fd));
  }
  Handoff handoff;
  const Listener::Result result = listener.AcceptOne(handoff);
  filler.clear();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_EQ(result, Listener::Result::kExhausted);
  EXPECT_EQ(listener.counters().refused.load(), 1u);
  EXPECT_EQ(listener.counters().accepted.load(), 0u);
  // The shed client sees a clean close instead of hanging in the backlog.
  char c;
  EXPECT_EQ(::recv(client.get(), &c, 1, 0), 0);
}

}  // namespace
}  // namespace troupe
