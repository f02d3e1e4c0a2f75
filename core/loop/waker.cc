#include "core/loop/waker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace troupe {

absl::StatusOr<Waker> Waker::Create() {
  Fd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "eventfd");
  return Waker(std::move(fd));
}

void Waker::WriteEventFd() {
  writes_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t one = 1;
  // EAGAIN means the counter is saturated: the reactor is already woken.
  while (::write(fd_.get(), &one, sizeof(one)) < 0 && errno == EINTR) {
  }
}

void Waker::Consume() {
  uint64_t count;
  while (::read(fd_.get(), &count, sizeof(count)) < 0 && errno == EINTR) {
  }
}

}  // namespace troupe
