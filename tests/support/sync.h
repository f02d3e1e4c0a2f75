// Test synchronisation that ThreadSanitizer can see.
//
// Debian's Abseil is a prebuilt shared library, not compiled with
// -fsanitize=thread: absl::Mutex and absl::Notification synchronise inside
// code TSan never sees, so `make test-tsan` reports races on the very data
// they protect. These mirror the part of their API the tests use, over
// std::mutex and std::condition_variable, which TSan understands.
//
//   testing::Notification done;
//   reactor->Post([&] { done.Notify(); });
//   ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20)));
//
//   testing::Mutex mu;
//   std::vector<int> seen ABSL_GUARDED_BY(mu);
//   { testing::MutexLock lock(&mu); seen.push_back(1); }
//
// Thread safety: thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"

namespace troupe::testing {

class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A one-shot event: Notify() once, wait any number of times.
class Notification {
 public:
  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    notified_ = true;
    cv_.notify_all();
  }
  bool HasBeenNotified() const {
    std::lock_guard<std::mutex> lock(mu_);
    return notified_;
  }
  void WaitForNotification() const {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return notified_; });
  }
  bool WaitForNotificationWithTimeout(absl::Duration timeout) const {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [this] { return notified_; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool notified_ = false;
};

}  // namespace troupe::testing
