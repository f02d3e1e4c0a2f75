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

#include <memory>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"

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

  // The process-wide pool used when an actor names none; created on first use.
  static OffloadPool& Default();

 private:
  void WorkerLoop();

  struct Queue;  // moodycamel's BlockingConcurrentQueue (offload_pool.cc)
  std::unique_ptr<Queue> jobs_;
  std::vector<std::thread> workers_;
};

}  // namespace troupe
