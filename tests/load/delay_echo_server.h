// DelayEchoServer: an echo server on 127.0.0.1:<kernel-picked port> that
// answers every byte `delay` after it arrived, for the tests of what
// echo-load measures (load/client_cpu.h, load/find_rate.h): with a known
// delay, latency bounds below it cannot be met and bounds above it can.
// Zero delay: a plain echo server. One poll() thread, written apart from the
// troupe server so that the client is tested against something else.
//
//   DelayEchoServer server(absl::Milliseconds(5));
//   options.target = server.address();
//
// Thread safety: construct and destroy on one thread; address() anywhere.
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "core/base/check.h"
#include "core/base/fd.h"
#include "core/net/address.h"
#include "core/net/socket.h"

namespace troupe::testing {

class DelayEchoServer {
 public:
  explicit DelayEchoServer(absl::Duration delay) : delay_ns_(absl::ToInt64Nanoseconds(delay)) {
    absl::StatusOr<Fd> listener = ListenTcp(*Address::FromHostPort("127.0.0.1", 0));
    TROUPE_CHECK(listener.ok(), "listen on 127.0.0.1:0");
    listener_ = *std::move(listener);
    port_ = LocalAddress(listener_.get())->port();
    stop_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    TROUPE_CHECK(stop_.valid(), "eventfd");
    thread_ = std::thread([this] { Loop(); });
  }

  ~DelayEchoServer() {
    const uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
    thread_.join();
  }

  DelayEchoServer(const DelayEchoServer&) = delete;
  DelayEchoServer& operator=(const DelayEchoServer&) = delete;

  Address address() const { return *Address::FromHostPort("127.0.0.1", port_); }

 private:
  struct Chunk {
    int64_t due_ns;
    std::string bytes;
  };
  struct Peer {
    Fd fd;
    std::deque<Chunk> held;  // Received, not yet due.
    std::string out;         // Due, not yet taken by the kernel.
  };

  static int64_t Now() {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
  }

  void Loop() {
    std::vector<std::unique_ptr<Peer>> peers;
    std::vector<pollfd> fds;
    char buffer[64 * 1024];
    for (;;) {
      // Move what fell due to the output, and find the next due time.
      const int64_t now = Now();
      int64_t next_due = INT64_MAX;
      for (auto& p : peers) {
        while (!p->held.empty() && p->held.front().due_ns <= now) {
          p->out += p->held.front().bytes;
          p->held.pop_front();
        }
        if (!p->held.empty()) next_due = std::min(next_due, p->held.front().due_ns);
      }
      for (auto& p : peers) Write(*p);
      fds.clear();
      fds.push_back({stop_.get(), POLLIN, 0});
      fds.push_back({listener_.get(), POLLIN, 0});
      for (auto& p : peers) {
        fds.push_back(
            {p->fd.get(), static_cast<short>(POLLIN | (p->out.empty() ? 0 : POLLOUT)), 0});
      }
      timespec timeout{};
      timespec* wait = nullptr;  // No echo held back: until something happens.
      if (next_due != INT64_MAX) {
        const int64_t ns = std::max<int64_t>(next_due - Now(), 0);
        timeout = {static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
        wait = &timeout;
      }
      if (::ppoll(fds.data(), fds.size(), wait, nullptr) < 0 && errno != EINTR) return;
      if (fds[0].revents != 0) return;
      if (fds[1].revents != 0) {
        for (;;) {
          const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          auto peer = std::make_unique<Peer>();
          peer->fd = Fd(fd);
          peers.push_back(std::move(peer));
        }
      }
      const int64_t arrived = Now();
      for (size_t i = 2; i < fds.size(); ++i) {
        Peer& p = *peers[i - 2];
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        for (;;) {
          const ssize_t n = ::recv(p.fd.get(), buffer, sizeof(buffer), 0);
          if (n > 0) {
            p.held.push_back({arrived + delay_ns_, std::string(buffer, static_cast<size_t>(n))});
            continue;
          }
          if (n == 0 || (errno != EAGAIN && errno != EINTR)) p.fd.Reset();
          break;
        }
      }
      std::erase_if(peers, [](const std::unique_ptr<Peer>& p) { return !p->fd.valid(); });
    }
  }

  static void Write(Peer& p) {
    while (!p.out.empty() && p.fd.valid()) {
      const ssize_t n = ::send(p.fd.get(), p.out.data(), p.out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        p.out.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN) p.fd.Reset();
      return;
    }
  }

  const int64_t delay_ns_;
  Fd listener_;
  Fd stop_;
  uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace troupe::testing
