#include "actors/offload_pool.h"

#include "concurrentqueue/blockingconcurrentqueue.h"
#include "core/base/check.h"
#include "core/server.h"

namespace troupe {

struct OffloadPool::Queue {
  moodycamel::BlockingConcurrentQueue<Job> jobs;
};

OffloadPool::OffloadPool(int threads) : jobs_(std::make_unique<Queue>()) {
  const int n = threads > 0 ? threads : OnlineCpus();
  workers_.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

OffloadPool::~OffloadPool() {
  // An empty job is the stop sign: one per worker; each worker takes one and
  // exits. Order holds per producer only, so jobs other threads queued
  // earlier may sit behind the signs: run those here, after the join.
  for (size_t i = 0; i < workers_.size(); ++i) jobs_->jobs.enqueue(Job());
  for (std::thread& t : workers_) t.join();
  Job job;
  while (jobs_->jobs.try_dequeue(job)) {
    if (job != nullptr) std::move(job)();
  }
}

void OffloadPool::Submit(Job job) {
  TROUPE_CHECK(job != nullptr, "OffloadPool::Submit of an empty job");
  TROUPE_CHECK(jobs_->jobs.enqueue(std::move(job)), "offload queue allocation failed");
}

void OffloadPool::WorkerLoop() {
  while (true) {
    Job job;
    jobs_->jobs.wait_dequeue(job);
    if (job == nullptr) return;  // stop sign
    std::move(job)();
  }
}

OffloadPool& OffloadPool::Default() {
  static OffloadPool* pool = new OffloadPool();  // never destroyed: reactors
  return *pool;                                  // may outlive static teardown
}

}  // namespace troupe
