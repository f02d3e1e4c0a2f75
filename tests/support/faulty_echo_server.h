// FaultyEchoServer: an echo server on 127.0.0.1:<kernel-picked port>, one
// poll() thread, that echoes every byte back unless told to break the echo
// on purpose, the same way on every connection (offsets count from each
// connection's first byte, so every connection of a churn run gets them):
//
//   corrupt_at        flips the byte at this offset;
//   drop_at/length    does not echo these bytes (a whole frame, when they
//                     are one), but echoes the rest;
//   repeat_at/length  echoes these bytes twice (a duplicated frame);
//   close_at          closes the connection (a FIN) once this many bytes
//                     arrived, without echoing them: 0 closes it before any
//                     echo, a server that hangs up on every client;
//   silent            echoes nothing at all (and closes only after the
//                     client does): a server that hangs.
//
// Written independently of troupe's server and of load/, so the load client
// is tested against something else. When the client sends its FIN, the
// server sends what it still owes, then its own FIN, as an echo server does.
//
//   FaultyEchoServer server({.drop_at = 640, .drop_length = 64});
//   options.target = server.address();
//   ... RunLoad(options) ... EXPECT_GT(server.accepted(), 0);
//
// Thread safety: accepted() is thread-safe; construct and destroy on one
// thread.
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/check.h"
#include "core/base/fd.h"
#include "core/net/address.h"
#include "core/net/socket.h"

namespace troupe::testing {

struct EchoFaultPlan {
  int64_t corrupt_at = -1;
  int64_t drop_at = -1;
  int64_t drop_length = 0;
  int64_t repeat_at = -1;
  int64_t repeat_length = 0;
  int64_t close_at = -1;
  bool silent = false;
};

class FaultyEchoServer {
 public:
  explicit FaultyEchoServer(EchoFaultPlan plan = {}) : plan_(plan) {
    // ASSERT_* cannot be used in a constructor; a broken setup aborts.
    absl::StatusOr<Fd> listener = ListenTcp(*Address::FromHostPort("127.0.0.1", 0));
    TROUPE_CHECK(listener.ok(), "listen on 127.0.0.1:0");
    listener_ = *std::move(listener);
    address_ = *LocalAddress(listener_.get());
    stop_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    TROUPE_CHECK(stop_.valid(), "eventfd");
    thread_ = std::thread([this] { Loop(); });
  }

  ~FaultyEchoServer() {
    const uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
    thread_.join();
  }

  FaultyEchoServer(const FaultyEchoServer&) = delete;
  FaultyEchoServer& operator=(const FaultyEchoServer&) = delete;

  const Address& address() const { return address_; }

  // Connections accepted so far.
  int accepted() {
    std::lock_guard<std::mutex> lock(mu_);
    return accepted_;
  }

 private:
  struct Peer {
    Fd fd;
    int64_t offset = 0;        // Bytes received so far.
    std::string pending;       // Echo the kernel has not taken yet.
    std::string repeat;        // repeat_at's bytes, collected.
    bool peer_closed = false;  // Its FIN came: ours follows the echo.
  };

  // Queues the echo of `n` bytes received at p.offset, faults applied.
  void Echo(Peer& p, const char* data, int64_t n) {
    for (int64_t i = 0; i < n && !plan_.silent; ++i) {
      const int64_t at = p.offset + i;
      char byte = data[i];
      if (at == plan_.corrupt_at) byte = static_cast<char>(byte ^ 0x01);
      if (at >= plan_.drop_at && at < plan_.drop_at + plan_.drop_length) continue;
      p.pending.push_back(byte);
      if (at >= plan_.repeat_at && at < plan_.repeat_at + plan_.repeat_length) {
        p.repeat.push_back(byte);
        if (at == plan_.repeat_at + plan_.repeat_length - 1) p.pending += p.repeat;
      }
    }
    p.offset += n;
  }

  // Reads, echoes and closes as the plan says; false once it is closed.
  bool Serve(Peer& p, short revents, char* buffer, size_t size) {
    if ((revents & (POLLIN | POLLHUP | POLLERR)) != 0 && !p.peer_closed) {
      const ssize_t n = ::recv(p.fd.get(), buffer, size, 0);
      if (n > 0) {
        if (plan_.close_at >= 0 && p.offset + n >= plan_.close_at) return false;
        Echo(p, buffer, n);
      } else if (n == 0) {
        p.peer_closed = true;
      } else if (errno != EAGAIN && errno != EINTR) {
        return false;
      }
    }
    if (!p.pending.empty()) {
      const ssize_t n = ::send(p.fd.get(), p.pending.data(), p.pending.size(), MSG_NOSIGNAL);
      if (n > 0) {
        p.pending.erase(0, static_cast<size_t>(n));
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return false;
      }
    }
    // Everything echoed after the client's FIN: close, sending ours.
    return !(p.peer_closed && p.pending.empty());
  }

  void Loop() {
    std::vector<std::unique_ptr<Peer>> peers;
    std::vector<pollfd> fds;
    char buffer[64 * 1024];
    for (;;) {
      fds.clear();
      fds.push_back({stop_.get(), POLLIN, 0});
      fds.push_back({listener_.get(), POLLIN, 0});
      for (auto& p : peers) {
        short events = p->peer_closed ? 0 : POLLIN;
        if (!p->pending.empty()) events |= POLLOUT;
        fds.push_back({p->fd.get(), events, 0});
      }
      if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return;
      if (fds[0].revents != 0) return;
      if (fds[1].revents != 0) {
        for (;;) {
          const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          auto peer = std::make_unique<Peer>();
          peer->fd = Fd(fd);
          peers.push_back(std::move(peer));
          std::lock_guard<std::mutex> lock(mu_);
          ++accepted_;
        }
      }
      constexpr size_t kFirstPeer = 2;
      for (size_t i = 0; i + kFirstPeer < fds.size(); ++i) {
        if (!Serve(*peers[i], fds[i + kFirstPeer].revents, buffer, sizeof(buffer))) {
          peers[i]->fd.Reset();
        }
      }
      std::erase_if(peers, [](const auto& p) { return !p->fd.valid(); });
    }
  }

  const EchoFaultPlan plan_;
  Fd listener_;
  Address address_;
  Fd stop_;
  std::mutex mu_;
  int accepted_ = 0;  // Guarded by mu_.
  std::thread thread_;
};

}  // namespace troupe::testing
