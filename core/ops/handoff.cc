#include "core/ops/handoff.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/base/check.h"
#include "core/base/log.h"

namespace troupe {
namespace {

constexpr char kGreeting[] = "TROUPE-HANDOFF 1";
// A line longer than this is not ours.
constexpr size_t kMaxLine = 512;
// How long a taker may hold the handoff between our greeting and its READY
// (it starts a server meanwhile); then we go on serving and offering.
constexpr absl::Duration kReadyTimeout = absl::Seconds(30);

absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "': a Unix socket path must be 1..",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// Waits until `fd` is readable (true), or `deadline` passes or `abort_fd`
// (if >= 0) is readable (false).
bool WaitReadable(int fd, absl::Time deadline, int abort_fd) {
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd p[2] = {{fd, POLLIN, 0}, {abort_fd, POLLIN, 0}};
    const int ms = static_cast<int>(std::min<int64_t>(
        absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), 1 << 30));
    const int rc = ::poll(p, abort_fd >= 0 ? 2 : 1, ms);
    if (rc > 0 && p[1].revents != 0) return false;
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return true;  // the read reports the error
  }
}

// connect() on a non-blocking Unix stream socket, bounded by `deadline`; the
// socket is blocking again afterwards. A full backlog (EAGAIN) is retried.
int ConnectUnixBy(int fd, const sockaddr_un& addr, absl::Time deadline) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return -1;
  int rc;
  for (;;) {
    rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
    if (rc == 0 || errno == EISCONN) {
      rc = 0;
      break;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EINPROGRESS) break;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      errno = ETIMEDOUT;
      break;
    }
    if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      const int ms = static_cast<int>(std::min<int64_t>(
          absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), 1 << 30));
      if (::poll(&p, 1, ms) == 0) {
        errno = ETIMEDOUT;
        break;
      }
      int err = 0;
      socklen_t len = sizeof(err);
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) break;
      errno = err;
      rc = err == 0 ? 0 : -1;
      break;
    }
    // EAGAIN: the listener's backlog is full; a Unix socket never completes
    // a connect in the background, so ask again shortly (bounded above).
    pollfd none{-1, 0, 0};
    ::poll(&none, 1, static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left), 10)));
  }
  const int saved = errno;
  ::fcntl(fd, F_SETFL, flags);
  errno = saved;
  return rc;
}

absl::Status SendAll(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::ErrnoToStatus(errno, what);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Reads one '\n'-terminated line (without it) and any descriptors that came
// with it (MSG_CMSG_CLOEXEC). The peers speak in turns, so nothing after the
// line is read away.
absl::StatusOr<std::string> ReadLine(int fd, absl::Time deadline, const std::string& what,
                                     std::vector<Fd>* fds, int abort_fd = -1) {
  std::string line;
  for (;;) {
    if (!WaitReadable(fd, deadline, abort_fd)) {
      return absl::DeadlineExceededError(absl::StrCat(what, ": no reply in time"));
    }
    char chunk[kMaxLine];
    iovec iov{chunk, sizeof(chunk)};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat(what, ": recvmsg"));
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        Fd owned(received);  // closed unless the caller wants descriptors
        if (fds != nullptr) fds->push_back(std::move(owned));
      }
    }
    if (n == 0) {
      return absl::UnavailableError(
          absl::StrCat(what, ": closed by the peer", line.empty() ? "" : " mid-line"));
    }
    line.append(chunk, static_cast<size_t>(n));
    if (const size_t nl = line.find('\n'); nl != std::string::npos) {
      line.resize(nl);
      return line;
    }
    if (line.size() > kMaxLine) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": a reply line over ", kMaxLine, " bytes"));
    }
  }
}

}  // namespace

absl::Status CheckHandoffPeer(const ucred& peer, uid_t self, const std::string& what) {
  if (peer.uid == self || peer.uid == 0) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(what, ": the peer (pid ", peer.pid, ", uid ",
                                                  peer.uid, ") is neither uid ", self,
                                                  " nor root; refusing it"));
}

absl::StatusOr<std::unique_ptr<HandoffServer>> HandoffServer::Create(
    std::string path, int listen_fd, std::string address,
    std::function<void(pid_t)> on_taken_over) {
  absl::StatusOr<sockaddr_un> addr = UnixAddress(path);
  if (!addr.ok()) return addr.status();
  Fd copy(::fcntl(listen_fd, F_DUPFD_CLOEXEC, 0));
  if (!copy.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("handoff ", path, ": dup"));
  Fd unix_listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!unix_listener.valid()) {
    return absl::ErrnoToStatus(errno, absl::StrCat("handoff ", path, ": socket"));
  }
  // A socket file left by a process that is gone (or by the process we took
  // over from, which never unlinks it after a takeover) would fail the bind:
  // it is unlinked, but only a socket, and only one nobody answers on.
  struct stat existing {};
  if (::lstat(path.c_str(), &existing) == 0) {
    if (!S_ISSOCK(existing.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("handoff ", path, ": exists and is not a socket; refusing to replace it"));
    }
    Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe.valid()) {
      return absl::ErrnoToStatus(errno, absl::StrCat("handoff ", path, ": socket"));
    }
    if (ConnectUnixBy(probe.get(), *addr, absl::Now() + absl::Seconds(1)) == 0 ||
        errno == ETIMEDOUT) {
      return absl::FailedPreconditionError(
          absl::StrCat("handoff ", path, ": in use by a running server"));
    }
    if (errno != ECONNREFUSED) {
      return absl::ErrnoToStatus(errno, absl::StrCat("handoff ", path, ": probing it"));
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return absl::ErrnoToStatus(errno, absl::StrCat("unlink ", path));
    }
  } else if (errno != ENOENT) {
    return absl::ErrnoToStatus(errno, absl::StrCat("lstat ", path));
  }
  if (::bind(unix_listener.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("bind ", path));
  }
  // Whoever connects gets our listening socket: our user only (SO_PEERCRED
  // checks it again for each taker).
  if (::chmod(path.c_str(), 0600) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("chmod ", path));
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("stat ", path));
  }
  if (::listen(unix_listener.get(), 4) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("listen ", path));
  }
  Fd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("handoff ", path, ": eventfd"));
  return std::unique_ptr<HandoffServer>(
      new HandoffServer(std::move(path), std::move(unix_listener), std::move(copy), std::move(wake),
                        std::move(address), std::move(on_taken_over), st.st_dev, st.st_ino));
}

HandoffServer::HandoffServer(std::string path, Fd unix_listener, Fd listen_fd, Fd wake,
                             std::string address, std::function<void(pid_t)> on_taken_over,
                             dev_t dev, ino_t ino)
    : path_(std::move(path)),
      unix_listener_(std::move(unix_listener)),
      listen_fd_(std::move(listen_fd)),
      wake_(std::move(wake)),
      address_(std::move(address)),
      on_taken_over_(std::move(on_taken_over)),
      dev_(dev),
      ino_(ino) {}

HandoffServer::~HandoffServer() { Stop(); }

void HandoffServer::Start() {
  TROUPE_CHECK(!thread_.joinable(), "HandoffServer started twice");
  thread_ = std::thread([this] { Run(); });
}

void HandoffServer::Stop() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof(one));
    thread_.join();
  }
  unix_listener_.Reset();
  listen_fd_.Reset();
  if (taken_over_.load()) return;  // the path is the successor's now
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
    ::unlink(path_.c_str());
  }
}

void HandoffServer::Run() {
  for (;;) {
    pollfd fds[2] = {{unix_listener_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      TROUPE_LOG(kError, "handoff %s: poll: %s; no takeover offered from now on", path_,
                 std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    Fd conn(::accept4(unix_listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) continue;  // the taker gave up; the next one may come
    if (Serve(conn.get())) {
      // The successor accepts on the shared socket now: drop our copy, so
      // the socket's life is its business, and offer nothing more.
      listen_fd_.Reset();
      return;
    }
  }
}

bool HandoffServer::Serve(int conn) {
  ucred peer{};
  socklen_t len = sizeof(peer);
  if (::getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
    TROUPE_LOG(kWarning, "handoff %s: SO_PEERCRED: %s", path_, std::strerror(errno));
    return false;
  }
  if (absl::Status s = CheckHandoffPeer(peer, ::geteuid(), absl::StrCat("handoff ", path_));
      !s.ok()) {
    TROUPE_LOG(kWarning, "%s", std::string(s.message()));
    return false;
  }
  const std::string greeting = absl::StrCat(kGreeting, " ", address_, " ", ::getpid(), "\n");
  iovec iov{const_cast<char*>(greeting.data()), greeting.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  const int fd = listen_fd_.get();
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  ssize_t sent;
  do {
    sent = ::sendmsg(conn, &msg, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent != static_cast<ssize_t>(greeting.size())) {
    TROUPE_LOG(kWarning, "handoff %s: sendmsg to pid %d: %s", path_, peer.pid,
               sent < 0 ? std::strerror(errno) : "short write");
    return false;
  }
  TROUPE_LOG(kInfo, "handoff %s: offered %s to pid %d; serving until it is ready", path_, address_,
             peer.pid);
  // Stop() cuts the wait short: we are stopping for another reason.
  absl::StatusOr<std::string> reply = ReadLine(
      conn, absl::Now() + kReadyTimeout, absl::StrCat("handoff ", path_), nullptr, wake_.get());
  if (!reply.ok()) {
    TROUPE_LOG(kWarning, "handoff pid %d gave up (%s); still serving", peer.pid,
               std::string(reply.status().message()));
    return false;
  }
  if (*reply != absl::StrCat("READY ", peer.pid)) {
    TROUPE_LOG(kWarning, "handoff %s: pid %d sent '%s', not READY; still serving", path_, peer.pid,
               *reply);
    return false;
  }
  // From here on the successor accepts: we drain whether or not it hears us.
  taken_over_.store(true);
  // The path is the successor's to bind once it hears DRAINING: a listener
  // still open here would make its Create() see a running server there.
  unix_listener_.Reset();
  (void)SendAll(conn, "DRAINING\n", "send DRAINING");
  TROUPE_LOG(kInfo, "handoff %s: pid %d serves %s now; draining", path_, peer.pid, address_);
  if (on_taken_over_) on_taken_over_(peer.pid);
  return true;
}

absl::StatusOr<Takeover> Takeover::Receive(const std::string& path, absl::Duration timeout) {
  const std::string what = absl::StrCat("takeover ", path);
  absl::StatusOr<sockaddr_un> addr = UnixAddress(path);
  if (!addr.ok())
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", addr.status().message()));
  const absl::Time deadline = absl::Now() + timeout;
  Fd channel(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!channel.valid()) return absl::ErrnoToStatus(errno, absl::StrCat(what, ": socket"));
  if (ConnectUnixBy(channel.get(), *addr, deadline) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(what,
                                                   ": connect (is a server running with "
                                                   "--handoff-socket there?)"));
  }
  // Whoever listens there hands us the socket we will serve on: only our
  // own user (or root) is believed.
  ucred peer{};
  socklen_t len = sizeof(peer);
  if (::getsockopt(channel.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(what, ": SO_PEERCRED"));
  }
  if (absl::Status s = CheckHandoffPeer(peer, ::geteuid(), what); !s.ok()) return s;
  std::vector<Fd> fds;
  absl::StatusOr<std::string> line = ReadLine(channel.get(), deadline, what, &fds);
  if (!line.ok()) return line.status();
  // "TROUPE-HANDOFF 1 <address> <pid>"
  std::vector<std::string> words = absl::StrSplit(*line, ' ');
  int pid = 0;
  if (words.size() != 4 || absl::StrCat(words[0], " ", words[1]) != kGreeting ||
      !absl::SimpleAtoi(words[3], &pid) || pid <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not a troupe handoff (it said '", line->substr(0, 80), "')"));
  }
  if (fds.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected one listening socket, got ", fds.size()));
  }
  return Takeover(path, std::move(channel), std::move(fds[0]), std::move(words[2]), pid);
}

Takeover::Takeover(std::string path, Fd channel, Fd listen_fd, std::string address, pid_t from_pid)
    : path_(std::move(path)),
      channel_(std::move(channel)),
      listen_fd_(std::move(listen_fd)),
      address_(std::move(address)),
      from_pid_(from_pid) {}

absl::Status Takeover::Confirm(absl::Duration timeout) {
  const std::string what = absl::StrCat("takeover ", path_);
  if (absl::Status s = SendAll(channel_.get(), absl::StrCat("READY ", ::getpid(), "\n"),
                               absl::StrCat(what, ": send READY"));
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> reply =
      ReadLine(channel_.get(), absl::Now() + timeout, what, nullptr);
  channel_.Reset();
  if (!reply.ok()) return reply.status();
  if (*reply != "DRAINING") {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected DRAINING, got '", reply->substr(0, 80), "'"));
  }
  return absl::OkStatus();
}

}  // namespace troupe
