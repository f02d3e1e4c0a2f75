// raw-epoll: the speed of light for an echo server on Linux, the baseline of
// `make bench`. One thread per core, each with its own SO_REUSEPORT listener
// and its own level-triggered epoll loop; one 64 KiB stack buffer per thread;
// no allocation on the echo path. A reply the kernel does not take at once
// waits in a per-connection std::string (the only allocation, and only under
// backpressure); while it waits, that connection is watched for EPOLLOUT
// instead of EPOLLIN, so a slow reader cannot make the server buffer without
// bound.
//
// --codec lines|length makes it a message server, as echo-cluster --codec is
// (actors/codec.h): each read's complete frames are answered, each with the
// same frame (lines: without a "\r" before its "\n", as echo-cluster's
// lines codec echoes), all of one read's replies with one send(), written in
// place in the read buffer; a partial frame waits in a per-connection
// std::string for the next read. A line longer than 64 KiB or a frame above
// 16 MiB closes the connection (echo-cluster's default limits). The raw
// path, the default, is a separate instantiation of the loop and does none
// of this.
//
//   raw-epoll-server --port 0 --threads 2   # prints "listening on 127.0.0.1:PORT"
//   raw-epoll-server --port 0 --codec lines
//
// SIGTERM/SIGINT: every loop sees the stop eventfd and returns; exit 0.
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
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

int stop_fd = -1;

enum class Codec { kRaw, kLines, kLength };

// echo-cluster's defaults (--max-line, --max-frame).
constexpr size_t kMaxLine = 64 * 1024;
constexpr size_t kMaxFrame = 16u << 20;

// The complete frames of data[0, n), answered in place: each reply is moved
// to the front, so data[0, *reply_len) is every reply of this read back to
// back. Returns the bytes consumed (the rest is the start of a frame), or -1
// for a frame over the limit.
//
//   data: |line 1\r\n|line 2\n|li|      n = 17
//   after: |line 1\n|line 2\n|          *reply_len = 14, returns 15
template <Codec kCodec>
ssize_t Frame(char* data, size_t n, size_t* reply_len) {
  size_t used = 0;
  size_t out = 0;
  if constexpr (kCodec == Codec::kLines) {
    while (used < n) {
      const char* nl = static_cast<const char*>(std::memchr(data + used, '\n', n - used));
      if (nl == nullptr) {
        if (n - used > kMaxLine + 1) return -1;  // "\r" included
        break;
      }
      const size_t length = static_cast<size_t>(nl - (data + used));
      size_t text = length;
      if (text > 0 && data[used + text - 1] == '\r') --text;
      if (text > kMaxLine) return -1;
      // In place already unless a "\r" was dropped before (or here).
      if (out != used || text != length) {
        std::memmove(data + out, data + used, text);
        data[out + text] = '\n';
      }
      out += text + 1;
      used += length + 1;
    }
  } else {
    // Length frames come back as they are: the replies are the consumed bytes.
    while (n - used >= 4) {
      const auto* p = reinterpret_cast<const unsigned char*>(data + used);
      const size_t length = size_t{p[0]} << 24 | size_t{p[1]} << 16 | size_t{p[2]} << 8 | p[3];
      if (length > kMaxFrame) return -1;
      if (n - used - 4 < length) break;
      used += 4 + length;
    }
    out = used;
  }
  *reply_len = out;
  return static_cast<ssize_t>(used);
}

int Listen(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, SOMAXCONN) != 0) {
    std::perror("raw-epoll-server: bind/listen 127.0.0.1");
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

template <Codec kCodec>
void Loop(int listen_fd) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  Watch(ep, EPOLL_CTL_ADD, listen_fd, EPOLLIN);
  Watch(ep, EPOLL_CTL_ADD, stop_fd, EPOLLIN);
  std::vector<std::string> unsent;   // by fd; empty unless the kernel pushed back
  std::vector<std::string> partial;  // by fd, framed codecs: a frame's start
  char buf[64 * 1024];
  epoll_event events[256];
  for (;;) {
    const int n = ::epoll_wait(ep, events, 256, -1);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == stop_fd) return;
      if (fd == listen_fd) {
        int c;
        while ((c = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          int one = 1;
          ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          if (static_cast<size_t>(c) >= unsent.size()) {
            unsent.resize(c * 2 + 64);
            if constexpr (kCodec != Codec::kRaw) partial.resize(unsent.size());
          }
          Watch(ep, EPOLL_CTL_ADD, c, EPOLLIN);
        }
        continue;
      }
      std::string& pending = unsent[fd];
      if (!pending.empty()) {  // EPOLLOUT: finish the earlier reply first
        const ssize_t w = ::send(fd, pending.data(), pending.size(), MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) goto close_it;
        if (w > 0) pending.erase(0, static_cast<size_t>(w));
        if (pending.empty()) Watch(ep, EPOLL_CTL_MOD, fd, EPOLLIN);
        continue;
      }
      if constexpr (kCodec != Codec::kRaw) {
        const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN)) goto close_it;
        if (r < 0) continue;
        // Parsed where the bytes are: the stack buffer, or after a partial
        // frame from earlier reads.
        std::string& part = partial[static_cast<size_t>(fd)];
        char* data = buf;
        size_t len = static_cast<size_t>(r);
        if (!part.empty()) {
          part.append(buf, len);
          data = part.data();
          len = part.size();
        }
        size_t reply_len = 0;
        const ssize_t used = Frame<kCodec>(data, len, &reply_len);
        if (used < 0) goto close_it;
        ssize_t w = 0;
        if (reply_len > 0) w = ::send(fd, data, reply_len, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) goto close_it;
        if (w < 0) w = 0;
        if (static_cast<size_t>(w) < reply_len) {
          pending.assign(data + w, reply_len - static_cast<size_t>(w));
          Watch(ep, EPOLL_CTL_MOD, fd, EPOLLOUT);
        }
        if (data == buf) {
          part.assign(buf + used, len - static_cast<size_t>(used));
        } else {
          part.erase(0, static_cast<size_t>(used));
        }
        continue;
      } else {
        const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN)) goto close_it;
        if (r < 0) continue;
        ssize_t w = ::send(fd, buf, static_cast<size_t>(r), MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) goto close_it;
        if (w < 0) w = 0;
        if (w < r) {
          pending.assign(buf + w, static_cast<size_t>(r - w));
          Watch(ep, EPOLL_CTL_MOD, fd, EPOLLOUT);
        }
        continue;
      }
    close_it:
      std::string().swap(pending);
      if constexpr (kCodec != Codec::kRaw) std::string().swap(partial[static_cast<size_t>(fd)]);
      ::close(fd);  // also leaves the epoll set
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = 7007, threads = 1;
  Codec codec = Codec::kRaw;
  const auto usage = [&] {
    std::fprintf(stderr, "usage: %s [--port N] [--threads N] [--codec raw|lines|length]\n",
                 argv[0]);
    return 2;
  };
  if (argc % 2 == 0) return usage();  // a flag without its value
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--port"))
      port = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads"))
      threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--codec") && !std::strcmp(argv[i + 1], "raw"))
      codec = Codec::kRaw;
    else if (!std::strcmp(argv[i], "--codec") && !std::strcmp(argv[i + 1], "lines"))
      codec = Codec::kLines;
    else if (!std::strcmp(argv[i], "--codec") && !std::strcmp(argv[i + 1], "length"))
      codec = Codec::kLength;
    else
      return usage();
  }
  if (threads < 1) threads = static_cast<int>(std::thread::hardware_concurrency());
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // inherited by the loops
  stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

  // The first listener picks the port (port 0); the others join it.
  std::vector<int> listeners{Listen(port)};
  sockaddr_in bound{};
  socklen_t len = sizeof bound;
  ::getsockname(listeners[0], reinterpret_cast<sockaddr*>(&bound), &len);
  port = ntohs(bound.sin_port);
  for (int i = 1; i < threads; ++i) listeners.push_back(Listen(port));
  std::vector<std::thread> loops;
  const auto loop = codec == Codec::kLines    ? Loop<Codec::kLines>
                    : codec == Codec::kLength ? Loop<Codec::kLength>
                                              : Loop<Codec::kRaw>;
  for (int fd : listeners) loops.emplace_back(loop, fd);
  std::printf("listening on 127.0.0.1:%d\n", port);
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  const uint64_t one = 1;
  (void)!::write(stop_fd, &one, sizeof one);  // level-triggered: every loop sees it
  for (auto& t : loops) t.join();
  return 0;
}
