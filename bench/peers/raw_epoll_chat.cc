// raw-epoll-chat: the speed of light for a chat room server on Linux, the
// baseline for echo-cluster --mode chat (and echo-load --chat). It speaks
// the same protocol: every connection joins one room, and each line a
// member sends ("\n"-terminated, a "\r" before it dropped, 64 KiB at most)
// goes to every other member as "<sender ip:port>: <line>\n".
//
// One thread, one level-triggered epoll loop, one room: no locks at all.
// (A chat room is one shared piece of state; threads would add a lock or
// messages between them, which is what the server under test is measured
// on, not the baseline.) Each loop round coalesces: a line only appends to
// the other members' output strings, and once every event of the round is
// handled, each member with output gets one send() for all of it (then
// EPOLLOUT, if the kernel took less). TCP_NODELAY on every member.
//
// Like ChatActor (actors/builtin.cc), a member that is behind, more than
// 1 MiB of output waiting (echo-cluster's default high watermark), has
// lines shed rather than queued; the count goes to stderr at exit.
//
//   raw-epoll-chat --port 0   # prints "listening on 127.0.0.1:PORT"
//
// --threads is accepted for the command line's sake (bench scripts pass it
// to every peer) and must be 1.
//
// SIGTERM/SIGINT: the loop sees the stop eventfd and returns; exit 0.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kMaxLine = 64 * 1024;          // echo-cluster's --max-line default
constexpr size_t kHighWatermark = 1024 * 1024;  // ConnectionOptions::high_watermark

int stop_fd = -1;

struct Member {
  bool open = false;
  bool dirty = false;     // In the round's flush list.
  bool want_out = false;  // Watched for EPOLLOUT.
  size_t place = 0;       // In `members`.
  std::string name;       // "ip:port: "
  std::string in;         // A line whose "\n" has not come yet.
  std::string out;        // Output not yet taken by the kernel.
};

int Listen(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, SOMAXCONN) != 0) {
    std::perror("raw-epoll-chat: bind/listen 127.0.0.1");
    std::exit(1);
  }
  return fd;
}

void Watch(int ep, int op, int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  ::epoll_ctl(ep, op, fd, &ev);
}

class Room {
 public:
  explicit Room(int ep) : ep_(ep) {}

  void Accept(int listen_fd) {
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    int c;
    while ((c = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &len,
                          SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
      int one = 1;
      ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (static_cast<size_t>(c) >= by_fd_.size()) by_fd_.resize(static_cast<size_t>(c) * 2 + 64);
      Member& m = At(c);
      char ip[INET_ADDRSTRLEN] = "?";
      ::inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
      m = Member{};
      m.open = true;
      m.name = std::string(ip) + ":" + std::to_string(ntohs(peer.sin_port)) + ": ";
      m.place = members_.size();
      members_.push_back(c);
      Watch(ep_, EPOLL_CTL_ADD, c, EPOLLIN);
      len = sizeof peer;
    }
  }

  void OnReadable(int fd, char* buf, size_t size) {
    Member& m = At(fd);
    if (!m.open) return;
    const ssize_t r = ::recv(fd, buf, size, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
      Close(fd);
      return;
    }
    if (r < 0) return;
    // Whole lines straight from `buf`; only a partial one is copied.
    size_t start = 0;
    const size_t end = static_cast<size_t>(r);
    for (;;) {
      const void* nl = std::memchr(buf + start, '\n', end - start);
      if (nl == nullptr) break;
      const size_t stop = static_cast<size_t>(static_cast<const char*>(nl) - buf);
      if (m.in.empty()) {
        Broadcast(fd, buf + start, stop - start);
      } else {
        m.in.append(buf + start, stop - start);
        Broadcast(fd, m.in.data(), m.in.size());
        m.in.clear();
      }
      start = stop + 1;
    }
    m.in.append(buf + start, end - start);
    if (m.in.size() > kMaxLine) Close(fd);  // a protocol error, as the codec's
  }

  void OnWritable(int fd) {
    if (!At(fd).open) return;
    MarkDirty(fd);
  }

  // The end of the round: one send() per member with output.
  void Flush() {
    for (const int fd : dirty_) {
      Member& m = At(fd);
      m.dirty = false;
      if (!m.open || m.out.empty()) continue;
      const ssize_t w = ::send(fd, m.out.data(), m.out.size(), MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN && errno != EINTR) {
        Close(fd);
        continue;
      }
      if (w > 0) m.out.erase(0, static_cast<size_t>(w));
      const bool want_out = !m.out.empty();
      if (want_out != m.want_out) {
        m.want_out = want_out;
        Watch(ep_, EPOLL_CTL_MOD, fd, want_out ? EPOLLIN | EPOLLOUT : EPOLLIN);
      }
    }
    dirty_.clear();
  }

  uint64_t shed() const { return shed_; }

 private:
  void Broadcast(int from, const char* line, size_t n) {
    if (n > 0 && line[n - 1] == '\r') --n;
    const std::string& name = At(from).name;
    for (const int fd : members_) {
      if (fd == from) continue;
      Member& m = At(fd);
      if (m.out.size() > kHighWatermark) {
        ++shed_;
        continue;
      }
      m.out.append(name).append(line, n).push_back('\n');
      MarkDirty(fd);
    }
  }

  Member& At(int fd) { return by_fd_[static_cast<size_t>(fd)]; }

  void MarkDirty(int fd) {
    Member& m = At(fd);
    if (m.dirty) return;
    m.dirty = true;
    dirty_.push_back(fd);
  }

  void Close(int fd) {
    Member& m = At(fd);
    if (!m.open) return;
    // O(1) removal: the last member takes its place.
    const int last = members_.back();
    members_[m.place] = last;
    At(last).place = m.place;
    members_.pop_back();
    m.open = false;
    std::string().swap(m.in);
    std::string().swap(m.out);
    ::close(fd);  // also leaves the epoll set; a later round skips it
  }

  const int ep_;
  std::vector<Member> by_fd_;
  std::vector<int> members_;  // The room: open members' fds.
  std::vector<int> dirty_;    // Members with output this round.
  uint64_t shed_ = 0;
};

void Loop(int listen_fd) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  Watch(ep, EPOLL_CTL_ADD, listen_fd, EPOLLIN);
  Watch(ep, EPOLL_CTL_ADD, stop_fd, EPOLLIN);
  Room room(ep);
  static char buf[64 * 1024];
  epoll_event events[256];
  for (;;) {
    const int n = ::epoll_wait(ep, events, 256, -1);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == stop_fd) {
        if (room.shed() > 0) {
          std::fprintf(stderr, "raw-epoll-chat: %llu lines shed (members behind)\n",
                       static_cast<unsigned long long>(room.shed()));
        }
        return;
      }
      if (fd == listen_fd) {
        room.Accept(listen_fd);
        continue;
      }
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) room.OnReadable(fd, buf, sizeof buf);
      if (events[i].events & EPOLLOUT) room.OnWritable(fd);
    }
    room.Flush();
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = 7007, threads = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--port"))
      port = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads"))
      threads = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--port N] [--threads 1]\n", argv[0]);
      return 2;
    }
  }
  if (threads != 1) {
    std::fprintf(stderr, "%s: one thread only (one room, no locks), got --threads %d\n", argv[0],
                 threads);
    return 2;
  }
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // inherited by the loop
  stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

  const int listener = Listen(port);
  sockaddr_in bound{};
  socklen_t len = sizeof bound;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &len);
  port = ntohs(bound.sin_port);
  std::thread loop(Loop, listener);
  std::printf("listening on 127.0.0.1:%d\n", port);
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  const uint64_t one = 1;
  (void)!::write(stop_fd, &one, sizeof one);
  loop.join();
  return 0;
}
