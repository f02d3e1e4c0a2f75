// A blocking test client for line protocols: connect, send, read lines with
// a timeout, and tell EOF from silence.
//
//   LineClient client(server->address());
//   client.Send("hello\n");
//   std::optional<std::string> line = client.ReadLine();   // "hello"
//
// Thread safety: thread-compatible.
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <optional>
#include <string>
#include <string_view>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/base/fd.h"
#include "core/net/address.h"
#include "core/net/socket.h"
#include "gtest/gtest.h"

namespace troupe::testing {

class LineClient {
 public:
  explicit LineClient(const Address& address) {
    absl::StatusOr<Fd> fd = ConnectTcpBlocking(address);
    if (fd.ok()) fd_ = std::move(*fd);
  }
  bool connected() const { return fd_.valid(); }
  int fd() const { return fd_.get(); }

  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // The next line without its "\n"; nullopt on EOF, error or timeout
  // (eof() tells which).
  std::optional<std::string> ReadLine(absl::Duration timeout = absl::Seconds(20)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      const size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      if (!Fill(deadline)) return std::nullopt;
    }
  }

  // Exactly `n` bytes, or nullopt.
  std::optional<std::string> ReadBytes(size_t n, absl::Duration timeout = absl::Seconds(20)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (buffer_.size() < n) {
      if (!Fill(deadline)) return std::nullopt;
    }
    std::string out = buffer_.substr(0, n);
    buffer_.erase(0, n);
    return out;
  }

  // True if the server closes the connection within the timeout (any bytes
  // still arriving are appended to the unread buffer).
  bool WaitForEof(absl::Duration timeout = absl::Seconds(20)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!eof_) {
      if (!Fill(deadline)) return eof_;
    }
    return true;
  }
  bool eof() const { return eof_; }
  void ShutdownWrite() { ::shutdown(fd_.get(), SHUT_WR); }
  void Close() { fd_.Reset(); }

 private:
  bool Fill(absl::Time deadline) {
    if (eof_) return false;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    // poll() takes whole milliseconds: round up, or a wait shorter than 1 ms
    // (WaitForEof(absl::Milliseconds(1)) once any time has passed) would
    // never poll nor read at all.
    const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1)));
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(ms)) != 1) return false;
    char chunk[4096];
    const ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  Fd fd_;
  std::string buffer_;
  bool eof_ = false;
};

// One request on a fresh connection (an HTTP request, or nothing for a
// server that speaks first): every line answered until the server closes,
// each followed by "\n". The caller's EXPECTs fail if the connection or the
// close does not come.
inline std::string RequestUntilEof(const Address& address, std::string_view request) {
  LineClient client(address);
  if (!request.empty()) {
    EXPECT_TRUE(client.Send(request));
  }
  EXPECT_TRUE(client.WaitForEof());
  std::string all;
  while (std::optional<std::string> line = client.ReadLine(absl::Milliseconds(10))) {
    all += *line + "\n";
  }
  return all;
}

}  // namespace troupe::testing
