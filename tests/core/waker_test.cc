#include "core/loop/waker.h"

#include <poll.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "concurrentqueue/concurrentqueue.h"
#include "gtest/gtest.h"

namespace troupe {
namespace {

bool Readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

TEST(WakerTest, NotifyWithoutSleeperWritesNothing) {
  Waker waker = Waker::Create().value();
  waker.Notify();
  waker.Notify();
  EXPECT_EQ(waker.wake_writes(), 0u);
  EXPECT_FALSE(Readable(waker.fd(), 0));
}

TEST(WakerTest, NotifyWakesSleeperOnceForManyProducers) {
  Waker waker = Waker::Create().value();
  ASSERT_TRUE(waker.PrepareToSleep([] { return false; }));
  waker.Notify();
  waker.Notify();  // coalesced: the flag was already taken
  EXPECT_EQ(waker.wake_writes(), 1u);
  EXPECT_TRUE(Readable(waker.fd(), 0));
  waker.Awake();
  waker.Consume();
  EXPECT_FALSE(Readable(waker.fd(), 0));
}

TEST(WakerTest, PrepareToSleepSeesPublishedWork) {
  Waker waker = Waker::Create().value();
  EXPECT_FALSE(waker.PrepareToSleep([] { return true; }));
  waker.Notify();  // not sleeping any more: no write
  EXPECT_EQ(waker.wake_writes(), 0u);
}

// Producers publish in bursts with pauses so the consumer goes to sleep
// often. A lost wake-up leaves items queued while the consumer sleeps; the
// consumer's bounded wait then times out and the test fails instead of hanging.
TEST(WakerTest, StressNoLostWakeups) {
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 20000;
  Waker waker = Waker::Create().value();
  moodycamel::ConcurrentQueue<int> queue;
  std::atomic<bool> go{false};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      while (!go.load()) {
      }
      moodycamel::ProducerToken token(queue);
      for (int i = 0; i < kPerProducer; ++i) {
        queue.enqueue(token, p);
        waker.Notify();
        if (i % 64 == p) std::this_thread::yield();
      }
    });
  }
  go.store(true);
  int received = 0;
  int lost_wakeups = 0;
  int items[256];
  while (received < kProducers * kPerProducer) {
    size_t n = queue.try_dequeue_bulk(items, 256);
    received += static_cast<int>(n);
    if (n > 0) continue;
    if (!waker.PrepareToSleep([&] { return queue.size_approx() > 0; })) continue;
    // Ten seconds: generous on a loaded machine, and a lost wake-up would
    // otherwise sleep forever.
    const bool woke = Readable(waker.fd(), 10000);
    waker.Awake();
    if (woke) {
      waker.Consume();
    } else if (queue.size_approx() > 0) {
      ++lost_wakeups;
      break;
    }
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(lost_wakeups, 0);
  EXPECT_EQ(received, kProducers * kPerProducer);
}

}  // namespace
}  // namespace troupe
