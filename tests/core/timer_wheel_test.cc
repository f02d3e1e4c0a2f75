#include "core/loop/timer_wheel.h"

#include <vector>

#include "gtest/gtest.h"

namespace troupe {
namespace {

using Clock = TimerWheel::Clock;
using std::chrono::milliseconds;

ConnectionId Id(uint32_t slot) { return ConnectionId{0, slot, 1}; }

std::vector<uint32_t> AdvanceTo(TimerWheel& wheel, Clock::time_point now) {
  std::vector<uint32_t> fired;
  wheel.Advance(now, [&](ConnectionId id) { fired.push_back(id.slot); });
  return fired;
}

TEST(TimerWheelTest, FiresNoEarlierThanDeadlineAndAtMostOneTickLate) {
  const Clock::time_point t0{};
  TimerWheel wheel(milliseconds(10), 16, t0);
  wheel.Schedule(Id(1), t0 + milliseconds(25));
  EXPECT_TRUE(AdvanceTo(wheel, t0 + milliseconds(20)).empty());
  EXPECT_TRUE(AdvanceTo(wheel, t0 + milliseconds(29)).empty());
  EXPECT_EQ(AdvanceTo(wheel, t0 + milliseconds(30)), std::vector<uint32_t>{1});
  EXPECT_TRUE(wheel.empty());
}

TEST(TimerWheelTest, PastDeadlineFiresOnNextTick) {
  const Clock::time_point t0{};
  TimerWheel wheel(milliseconds(10), 8, t0);
  wheel.Schedule(Id(7), t0 - milliseconds(100));
  EXPECT_EQ(AdvanceTo(wheel, t0 + milliseconds(10)), std::vector<uint32_t>{7});
}

TEST(TimerWheelTest, BeyondTheSpanFiresEarlyForRescheduling) {
  const Clock::time_point t0{};
  TimerWheel wheel(milliseconds(10), 4, t0);  // spans 30 ms ahead
  wheel.Schedule(Id(3), t0 + milliseconds(1000));
  const std::vector<uint32_t> fired = AdvanceTo(wheel, t0 + milliseconds(30));
  EXPECT_EQ(fired, std::vector<uint32_t>{3});  // the owner re-checks and reschedules
}

TEST(TimerWheelTest, RescheduleFromCallbackLandsLater) {
  const Clock::time_point t0{};
  TimerWheel wheel(milliseconds(10), 8, t0);
  wheel.Schedule(Id(1), t0 + milliseconds(10));
  int fired = 0;
  wheel.Advance(t0 + milliseconds(10), [&](ConnectionId id) {
    ++fired;
    wheel.Schedule(id, t0 + milliseconds(40));
  });
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(wheel.size(), 1u);
  EXPECT_TRUE(AdvanceTo(wheel, t0 + milliseconds(39)).empty());
  EXPECT_EQ(AdvanceTo(wheel, t0 + milliseconds(40)).size(), 1u);
}

TEST(TimerWheelTest, LongIdleGapSkipsAhead) {
  const Clock::time_point t0{};
  TimerWheel wheel(milliseconds(1), 8, t0);
  EXPECT_TRUE(AdvanceTo(wheel, t0 + std::chrono::hours(1)).empty());
  wheel.Schedule(Id(2), t0 + std::chrono::hours(1) + milliseconds(3));
  EXPECT_TRUE(AdvanceTo(wheel, t0 + std::chrono::hours(1) + milliseconds(2)).empty());
  EXPECT_EQ(AdvanceTo(wheel, t0 + std::chrono::hours(1) + milliseconds(3)).size(), 1u);
}

TEST(TimerWheelTest, NextDueIsTheEndOfTheTickWhileBusy) {
  const Clock::time_point t0{};
  TimerWheel wheel(milliseconds(10), 8, t0);
  EXPECT_EQ(wheel.NextDue(), Clock::time_point::max());
  wheel.Schedule(Id(1), t0 + milliseconds(50));
  EXPECT_EQ(wheel.NextDue(), t0 + milliseconds(10));
}

TEST(TimerWheelTest, CancelRemovesTheEntryAtOnce) {
  const Clock::time_point t0 = Clock::now();
  TimerWheel wheel(milliseconds(10), 8, t0);
  wheel.Schedule(Id(1), t0 + milliseconds(20));
  wheel.Schedule(Id(2), t0 + milliseconds(20));
  wheel.Schedule(Id(3), t0 + milliseconds(20));
  wheel.Cancel(Id(1));  // swap-remove: 3 moves into 1's place
  wheel.Cancel(Id(3));
  EXPECT_EQ(wheel.size(), 1u);
  EXPECT_EQ(AdvanceTo(wheel, t0 + milliseconds(20)), std::vector<uint32_t>{2});
  wheel.Cancel(Id(2));  // already fired: nothing to do
  EXPECT_TRUE(wheel.empty());
}

TEST(TimerWheelTest, ScheduleReplacesAConnectionsEntry) {
  // One entry per connection, however often its deadline moves: a wheel
  // that appended would grow with activity (or churn) instead of with the
  // connections that have a deadline.
  const Clock::time_point t0 = Clock::now();
  TimerWheel wheel(milliseconds(10), 16, t0);
  for (int i = 1; i <= 100; ++i) wheel.Schedule(Id(5), t0 + milliseconds(i));
  EXPECT_EQ(wheel.size(), 1u);
  EXPECT_TRUE(AdvanceTo(wheel, t0 + milliseconds(90)).empty());
  EXPECT_EQ(AdvanceTo(wheel, t0 + milliseconds(100)), std::vector<uint32_t>{5});
}

TEST(TimerWheelTest, CancelWithAStaleGenerationLeavesTheNewEntry) {
  const Clock::time_point t0 = Clock::now();
  TimerWheel wheel(milliseconds(10), 8, t0);
  wheel.Schedule(ConnectionId{0, 4, 2}, t0 + milliseconds(10));
  wheel.Cancel(ConnectionId{0, 4, 1});  // the slot's previous connection
  EXPECT_EQ(wheel.size(), 1u);
}

TEST(TimerWheelTest, FarDeadlineDoesNotOverflow) {
  const Clock::time_point t0 = Clock::now();
  TimerWheel wheel(milliseconds(10), 8, t0);
  wheel.Schedule(Id(1), Clock::time_point::max());
  EXPECT_TRUE(AdvanceTo(wheel, t0 + milliseconds(60)).empty());
  EXPECT_EQ(AdvanceTo(wheel, t0 + milliseconds(70)).size(),
            1u);  // wrapped: rescheduled by the owner
}

}  // namespace
}  // namespace troupe
