#include "load/chat_tracker.h"

#include <cstdint>
#include <map>
#include <utility>

#include "gtest/gtest.h"

namespace troupe::load {
namespace {

// The done values TakeChanged reports, by talker.
std::map<int, uint64_t> Changed(ChatTracker& tracker) {
  std::map<int, uint64_t> changed;
  tracker.TakeChanged([&](int t, uint64_t done) { changed[t] = done; });
  return changed;
}

TEST(ChatTrackerTest, DoneMovesOnceEveryListenerHasTheLine) {
  // Three members; member 0 is talker 0, so two listen to it.
  ChatTracker tracker(3, 1, 4);
  tracker.SetListeners(0, 2);
  EXPECT_EQ((Changed(tracker)), (std::map<int, uint64_t>{{0, 0}}));

  EXPECT_EQ(tracker.Receive(1, 0, 0).kind, ChatTracker::kDelivered);
  EXPECT_EQ(tracker.done(0), 0u);
  EXPECT_TRUE(Changed(tracker).empty());
  EXPECT_EQ(tracker.Receive(1, 0, 1).kind, ChatTracker::kDelivered);
  EXPECT_EQ(tracker.Receive(2, 0, 0).kind, ChatTracker::kDelivered);
  EXPECT_EQ(tracker.done(0), 1u);
  EXPECT_EQ(tracker.Receive(2, 0, 1).kind, ChatTracker::kDelivered);
  EXPECT_EQ(tracker.done(0), 2u);
  EXPECT_EQ((Changed(tracker)), (std::map<int, uint64_t>{{0, 2}}));
  EXPECT_EQ(tracker.next(1, 0), 2u);
}

TEST(ChatTrackerTest, TheRingWrapsAroundThePipeline) {
  ChatTracker tracker(2, 1, 2);
  tracker.SetListeners(0, 1);
  for (uint64_t seq = 0; seq < 100; ++seq) {
    ASSERT_EQ(tracker.Receive(1, 0, seq).kind, ChatTracker::kDelivered);
    ASSERT_EQ(tracker.done(0), seq + 1);
  }
}

TEST(ChatTrackerTest, ASkippedLineIsLostAndDoesNotHoldTheTalkerBack) {
  ChatTracker tracker(2, 1, 4);
  tracker.SetListeners(0, 1);
  tracker.Receive(1, 0, 0);
  const ChatTracker::Receipt r = tracker.Receive(1, 0, 3);
  EXPECT_EQ(r.kind, ChatTracker::kDelivered);
  EXPECT_EQ(r.skipped, 2u);
  EXPECT_EQ(tracker.done(0), 4u);
  EXPECT_EQ(tracker.next(1, 0), 4u);
}

TEST(ChatTrackerTest, ALateLineIsReorderedAndARepeatADuplicate) {
  ChatTracker tracker(2, 1, 4);
  tracker.SetListeners(0, 1);
  tracker.Receive(1, 0, 0);
  EXPECT_EQ(tracker.Receive(1, 0, 2).skipped, 1u);
  const ChatTracker::Receipt late = tracker.Receive(1, 0, 1);
  EXPECT_EQ(late.kind, ChatTracker::kReordered);
  EXPECT_EQ(late.previous, 2u);
  EXPECT_EQ(tracker.Receive(1, 0, 1).kind, ChatTracker::kDuplicate);
  EXPECT_EQ(tracker.Receive(1, 0, 2).kind, ChatTracker::kDuplicate);
  EXPECT_EQ(tracker.Receive(1, 0, 0).kind, ChatTracker::kDuplicate);
  EXPECT_EQ(tracker.done(0), 3u);
}

TEST(ChatTrackerTest, MembersAndTalkersAreKeptApart) {
  ChatTracker tracker(3, 2, 4);
  tracker.SetListeners(0, 2);
  tracker.SetListeners(1, 2);
  tracker.Receive(1, 0, 0);
  tracker.Receive(2, 1, 0);
  EXPECT_EQ(tracker.next(1, 0), 1u);
  EXPECT_EQ(tracker.next(1, 1), 0u);
  EXPECT_EQ(tracker.next(2, 0), 0u);
  EXPECT_EQ(tracker.next(2, 1), 1u);
  // Member 2 skipping talker 0's line 0 is no gap of member 1's.
  EXPECT_EQ(tracker.Receive(2, 0, 1).skipped, 1u);
  EXPECT_EQ(tracker.Receive(1, 0, 0).kind, ChatTracker::kDuplicate);
}

TEST(ChatTrackerTest, ADroppedMemberIsNoLongerWaitedFor) {
  ChatTracker tracker(3, 1, 4);
  tracker.SetListeners(0, 2);
  tracker.Receive(1, 0, 0);
  tracker.Receive(1, 0, 1);
  tracker.Receive(2, 0, 0);
  EXPECT_EQ(tracker.done(0), 1u);
  // Member 1 had line 1, member 2 not: without member 2, line 1 is done;
  // without member 1 too, nobody is left.
  tracker.Drop(2, -1);
  EXPECT_EQ(tracker.done(0), 2u);
  tracker.Drop(1, -1);
  EXPECT_EQ(tracker.done(0), ChatTracker::kAll);
  EXPECT_EQ((Changed(tracker)), (std::map<int, uint64_t>{{0, ChatTracker::kAll}}));
}

TEST(ChatTrackerTest, DroppingAMemberThatHadMoreTakesItsCountsBack) {
  ChatTracker tracker(3, 1, 4);
  tracker.SetListeners(0, 2);
  tracker.Receive(1, 0, 0);
  tracker.Receive(1, 0, 1);
  tracker.Drop(1, -1);
  // Member 2 alone now: line 0 is done only when it has it.
  EXPECT_EQ(tracker.done(0), 0u);
  tracker.Receive(2, 0, 0);
  EXPECT_EQ(tracker.done(0), 1u);
  tracker.Receive(2, 0, 1);
  EXPECT_EQ(tracker.done(0), 2u);
}

TEST(ChatTrackerTest, ATalkerNobodyListensToHoldsNobodyBack) {
  ChatTracker tracker(1, 1, 4);
  tracker.SetListeners(0, 0);
  EXPECT_EQ(tracker.done(0), ChatTracker::kAll);
}

}  // namespace
}  // namespace troupe::load
