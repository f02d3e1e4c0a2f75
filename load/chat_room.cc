#include "load/chat_room.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace troupe::load {

absl::StatusOr<std::unique_ptr<ChatRoom>> ChatRoom::Create(int threads, int talkers) {
  std::vector<Fd> wake_fds;
  for (int i = 0; i < threads; ++i) {
    Fd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd.valid()) return absl::ErrnoToStatus(errno, "eventfd");
    wake_fds.push_back(std::move(fd));
  }
  return std::unique_ptr<ChatRoom>(new ChatRoom(threads, talkers, std::move(wake_fds)));
}

ChatRoom::ChatRoom(int threads, int talkers, std::vector<Fd> wake_fds)
    : threads_(threads),
      talkers_(talkers),
      sent_(new Padded[static_cast<size_t>(talkers)]),
      stopped_(new Padded[static_cast<size_t>(talkers)]),
      done_(new Padded[static_cast<size_t>(threads) * static_cast<size_t>(talkers)]),
      waiting_(new Padded[static_cast<size_t>(threads)]),
      wake_fds_(std::move(wake_fds)),
      owner_(static_cast<size_t>(talkers), 0) {}

uint64_t ChatRoom::Done(int talker) const {
  uint64_t done = kAll;
  for (int w = 0; w < threads_; ++w) {
    done = std::min(done, done_[Slot(w, talker)].value.load(std::memory_order_seq_cst));
  }
  return done;
}

int ChatRoom::LaggingThread(int talker) const {
  int lagging = 0;
  uint64_t least = kAll;
  for (int w = 0; w < threads_; ++w) {
    const uint64_t d = done_[Slot(w, talker)].value.load(std::memory_order_relaxed);
    if (d < least) {
      least = d;
      lagging = w;
    }
  }
  return lagging;
}

void ChatRoom::FinishWaiting(int thread) {
  // A wake that comes anyway (its thread saw the flag before this) leaves
  // the eventfd readable: the next epoll_wait returns at once, one spare
  // turn of the loop, which reads it (DrainWake).
  waiting_[static_cast<size_t>(thread)].value.store(0, std::memory_order_relaxed);
}

void ChatRoom::DrainWake(int thread) {
  uint64_t count = 0;
  (void)!::read(wake_fd(thread), &count, sizeof(count));
}

void ChatRoom::Wake(int thread) {
  std::atomic<uint64_t>& waiting = waiting_[static_cast<size_t>(thread)].value;
  // The load keeps the common case (not asleep) free of a locked exchange.
  if (waiting.load(std::memory_order_seq_cst) == 0) return;
  if (waiting.exchange(0, std::memory_order_seq_cst) == 0) return;
  const uint64_t one = 1;
  (void)!::write(wake_fd(thread), &one, sizeof(one));
}

}  // namespace troupe::load
