// Test helpers: bounded waiting and descriptor counting.
//
//   ASSERT_TRUE(WaitFor([&] { return server->Stats().Total().open == 0; }));
//
// WaitFor polls a condition until it holds or the timeout passes; tests use it
// for state published through counters, where there is nothing to block on.
//
// Thread safety: thread-safe.
#pragma once

#include <dirent.h>

#include <chrono>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace troupe::testing {

template <typename Condition>
bool WaitFor(Condition&& condition, absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Open descriptors of this process.
inline int CountOpenFds() {
  int count = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (dirent* entry = ::readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    ::closedir(dir);
    --count;  // the DIR's own descriptor
  }
  return count;
}

}  // namespace troupe::testing
