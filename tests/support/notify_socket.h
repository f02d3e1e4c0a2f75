// NotifySocket: what systemd listens on for sd_notify(3) messages, for tests
// that check a program's READY=1, STATUS=, STOPPING=1 and WATCHDOG=1 without
// systemd: a Unix datagram socket in a fresh directory of its own; give its
// env() to the program (or setenv it for the process under test).
//
//   NotifySocket notify;
//   ASSERT_TRUE(notify.ok());
//   Subprocess::Options options;
//   options.env = {notify.env()};            // "NOTIFY_SOCKET=/tmp/.../notify"
//   ...
//   absl::StatusOr<std::string> ready = notify.WaitFor("READY=1", absl::Seconds(30));
//
// Thread safety: thread-safe (a reader thread of its own takes every message).
#pragma once

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/base/fd.h"

namespace troupe::testing {

class NotifySocket {
 public:
  NotifySocket() {
    char dir[] = "/tmp/troupe-notify-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return;
    dir_ = dir;
    path_ = dir_ + "/notify";
    fd_ = Fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      fd_.Reset();
      return;
    }
    // Read at once, always: the kernel queues only a few datagrams
    // (net.unix.max_dgram_qlen, 10 by default), and a sender blocks on a
    // full queue, as a program's watchdog thread would while a test waits.
    reader_ = std::thread([this] { Read(); });
  }
  ~NotifySocket() {
    stop_.store(true);
    if (reader_.joinable()) reader_.join();
    fd_.Reset();
    if (!path_.empty()) ::unlink(path_.c_str());
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  bool ok() const { return fd_.valid(); }
  const std::string& path() const { return path_; }
  std::string env() const { return "NOTIFY_SOCKET=" + path_; }

  // Takes messages in arrival order until one contains `needle`; returns that
  // one, or DeadlineExceeded (listing what came) after `timeout`.
  absl::StatusOr<std::string> WaitFor(const std::string& needle, absl::Duration timeout) {
    // std's mutex, not absl's: Debian's Abseil is not built for
    // ThreadSanitizer, which would then report races that are not there.
    const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      while (!messages_.empty()) {
        std::string m = std::move(messages_.front());
        messages_.pop_front();
        if (absl::StrContains(m, needle)) return m;
        absl::StrAppend(&skipped_, "[", m, "] ");
      }
      if (!arrived_.wait_until(lock, deadline, [this] { return !messages_.empty(); })) {
        return absl::DeadlineExceededError(
            absl::StrCat("no sd_notify message with '", needle, "'; got: ", skipped_));
      }
    }
  }

 private:
  void Read() {
    while (!stop_.load()) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;  // 50 ms: how soon the destructor is heard
      char buf[4096];
      const ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0) continue;
      {
        std::lock_guard<std::mutex> lock(mu_);
        messages_.emplace_back(buf, static_cast<size_t>(n));
      }
      arrived_.notify_all();
    }
  }

  std::string dir_;
  std::string path_;
  Fd fd_;
  std::thread reader_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable arrived_;
  std::deque<std::string> messages_;  // guarded by mu_
  std::string skipped_;               // guarded by mu_
};

}  // namespace troupe::testing
