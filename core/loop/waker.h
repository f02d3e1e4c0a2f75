// Waker: the wake-up protocol between producers on any thread and one reactor
// asleep in epoll_wait, over one eventfd.
//
// The rule (a Dekker-style handshake; both sides fence with seq_cst):
//
//   reactor (consumer)                    producer (any thread)
//   ------------------                    ---------------------
//   sleeping = true                       enqueue(item)
//   fence(seq_cst)                        fence(seq_cst)
//   if queues non-empty: sleeping=false,  if sleeping.exchange(false):
//        do not sleep                          write(eventfd)
//   else epoll_wait(...)
//   sleeping = false
//
// With both fences, at least one side sees the other's write: either the
// reactor sees the item before sleeping, or the producer sees `sleeping` and
// writes the eventfd. A busy reactor (sleeping == false) costs producers no
// syscall, and the exchange lets only the first of many producers write:
// wake-ups are coalesced.
//
//   Waker waker = Waker::Create().value();      // register waker.fd() in epoll
//   // producer:  queue.enqueue(x); waker.Notify();
//   // reactor:   if (waker.PrepareToSleep([&] { return queue.size_approx() > 0; }))
//   //              epoll_wait(..., timeout);
//   //            waker.Awake();   // after epoll_wait returns
//   //            if (eventfd was readable) waker.Consume();
//
// Thread safety: Notify() any thread; the other methods on the consumer only.
#pragma once

#include <atomic>
#include <cstdint>

#include "absl/status/statusor.h"
#include "core/base/fd.h"

namespace troupe {

class Waker {
 public:
  static absl::StatusOr<Waker> Create();
  Waker(Waker&& other) noexcept
      : fd_(std::move(other.fd_)),
        sleeping_(other.sleeping_.load(std::memory_order_relaxed)),
        writes_(other.writes_.load(std::memory_order_relaxed)) {}

  int fd() const { return fd_.get(); }

  // Any thread; call after publishing work.
  void Notify() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleeping_.load(std::memory_order_relaxed) &&
        sleeping_.exchange(false, std::memory_order_relaxed)) {
      WriteEventFd();
    }
  }

  // Consumer. Returns true if the caller may block; false if `has_work`
  // reported work published before the sleeping flag became visible.
  template <typename HasWork>
  bool PrepareToSleep(HasWork&& has_work) {
    sleeping_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (has_work()) {
      sleeping_.store(false, std::memory_order_relaxed);
      return false;
    }
    return true;
  }
  // Consumer, after the blocking wait returned.
  void Awake() { sleeping_.store(false, std::memory_order_relaxed); }
  // Consumer, when the eventfd was readable: resets its counter.
  void Consume();

  // How many times a producer had to write the eventfd (for stats).
  uint64_t wake_writes() const { return writes_.load(std::memory_order_relaxed); }

 private:
  explicit Waker(Fd fd) : fd_(std::move(fd)) {}
  void WriteEventFd();

  Fd fd_;
  std::atomic<bool> sleeping_{false};
  std::atomic<uint64_t> writes_{0};
};

}  // namespace troupe
