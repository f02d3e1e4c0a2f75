#include "core/fd.h"

#include <sys/resource.h>
#include <unistd.h>

namespace troupe {

void Fd::Reset(int fd) {
  if (fd_ >= 0) {
    // close() may report EINTR on Linux, but the descriptor is released
    // either way; retrying would risk closing a reused number.
    ::close(fd_);
  }
  fd_ = fd;
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
