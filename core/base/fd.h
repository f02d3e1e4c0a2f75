// Fd: sole owner of a file descriptor; closes it on destruction.
//
//   troupe::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
//   if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket");
//   Use(fd.get());   // the descriptor stays owned by `fd`
//
// Thread safety: thread-compatible.
// Ownership: exactly one Fd owns a descriptor; moving transfers it.
#pragma once

#include <cstdint>
#include <utility>

#include "absl/status/status.h"

namespace troupe {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.Release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

  // Gives up ownership without closing.
  int Release() { return std::exchange(fd_, -1); }
  // Closes the owned descriptor (if any) and takes `fd`.
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Raises this process's soft RLIMIT_NOFILE to at least `wanted`; an error
// names both numbers when the hard limit is lower.
absl::Status RaiseOpenFileLimit(uint64_t wanted);
// Raises this process's soft RLIMIT_NOFILE to its hard limit (a server with
// thousands of connections needs it; the soft default is often 1024).
// Returns the soft limit in force afterwards.
uint64_t RaiseOpenFileLimitToHard();

}  // namespace troupe
