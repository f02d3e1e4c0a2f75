#include "load/schedule.h"

#include <cstddef>
#include <cstdint>

#include "gtest/gtest.h"

namespace troupe::load {
namespace {

constexpr int64_t kStart = 5'000'000'000;

TEST(LoadClientScheduleTest, DefaultIsClosedLoop) {
  EXPECT_FALSE(OpenLoopSchedule().active());
  EXPECT_TRUE(OpenLoopSchedule(1000, 4).active());
}

TEST(LoadClientScheduleTest, MessagesAreDueRoundRobinAtTheRate) {
  // 1000 msg/s over 4 connections: thread message seq at start + seq ms, on
  // connection seq mod 4.
  OpenLoopSchedule s(1000, 4);
  s.Start(kStart);
  EXPECT_EQ(s.SeqTime(0), kStart);
  EXPECT_EQ(s.SeqTime(7), kStart + 7'000'000);
  EXPECT_EQ(s.DueTime(0, 0), kStart);
  EXPECT_EQ(s.DueTime(3, 0), kStart + 3'000'000);
  EXPECT_EQ(s.DueTime(1, 2), kStart + 9'000'000);  // Thread message 1 + 2 * 4.
}

TEST(LoadClientScheduleTest, DueCountsAgreeWithDueTimes) {
  OpenLoopSchedule s(1000, 4);
  s.Start(kStart);
  EXPECT_EQ(s.SeqsDueBy(kStart - 1), 0u);
  for (size_t c = 0; c < 4; ++c) {
    EXPECT_EQ(s.DueCount(c, kStart - 1), 0u) << c;
    for (uint64_t k = 0; k < 5; ++k) {
      const int64_t due = s.DueTime(c, k);
      EXPECT_EQ(s.DueCount(c, due - 1), k) << c << "/" << k;
      EXPECT_EQ(s.DueCount(c, due), k + 1) << c << "/" << k;
    }
  }
  // The thread's count is the sum of its connections' at every instant.
  for (int64_t now = kStart - 500'000; now < kStart + 30'000'000; now += 250'000) {
    uint64_t sum = 0;
    for (size_t c = 0; c < 4; ++c) sum += s.DueCount(c, now);
    EXPECT_EQ(s.SeqsDueBy(now), sum) << now - kStart;
  }
}

}  // namespace
}  // namespace troupe::load
