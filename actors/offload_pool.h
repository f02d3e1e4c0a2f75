// OffloadPool: a fixed set of worker threads for CPU-heavy or blocking work,
// so that a reactor never stalls (docs/architecture.md: "a reactor never
// blocks"). Actors use it through Context::Offload, which brings the result
// back as mail on the actor's own reactor.
//
//   OffloadPool pool(4);
//   pool.Submit([] { Compress(big_buffer); });
//
// Jobs run in submission order per submitting thread, on whichever worker is
// free. The destructor stops the workers after the jobs already queued.
//
// Thread safety: thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "concurrentqueue/blockingconcurrentqueue.h"

namespace troupe {

class OffloadPool {
 public:
  using Job = absl::AnyInvocable<void() &&>;

  // threads <= 0: one per online CPU.
  explicit OffloadPool(int threads = 0);
  ~OffloadPool();
  OffloadPool(const OffloadPool&) = delete;
  OffloadPool& operator=(const OffloadPool&) = delete;

  // Any thread.
  void Submit(Job job);

  int threads() const { return static_cast<int>(workers_.size()); }
  uint64_t completed() const { return completed_.load(std::memory_order_relaxed); }

  // The process-wide pool used when an actor names none; created on first use.
  static OffloadPool& Default();

 private:
  void WorkerLoop();

  moodycamel::BlockingConcurrentQueue<Job> jobs_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> completed_{0};
};

}  // namespace troupe
