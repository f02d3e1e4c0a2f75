#include "core/base/fd.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace troupe {

void Fd::Reset(int fd) {
  if (fd_ >= 0) {
    // close() may report EINTR on Linux, but the descriptor is released
    // either way; retrying would risk closing a reused number.
    ::close(fd_);
  }
  fd_ = fd;
}

absl::Status RaiseOpenFileLimit(uint64_t wanted) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::ErrnoToStatus(errno, "getrlimit RLIMIT_NOFILE");
  }
  if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= wanted) {
    return absl::OkStatus();
  }
  if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "need ", wanted, " open files but the hard limit (ulimit -Hn) is ", limit.rlim_max));
  }
  limit.rlim_cur = wanted;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("setrlimit RLIMIT_NOFILE to ", wanted));
  }
  return absl::OkStatus();
}

uint64_t RaiseOpenFileLimitToHard() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur;
}

}  // namespace troupe
