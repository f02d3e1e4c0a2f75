#include "core/fd.h"

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

}  // namespace troupe
