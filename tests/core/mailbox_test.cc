#include "core/loop/mailbox.h"

#include <vector>

#include "gtest/gtest.h"

namespace troupe {
namespace {

std::vector<int> Drain(Mailbox& box) {
  std::vector<int> out;
  while (!box.empty()) out.push_back(*box.Pop().As<int>());
  return out;
}

TEST(MailboxTest, DropNewestKeepsTheFirstAndSaysSo) {
  Mailbox box;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(box.Push(Mail::Of(i), MailClass::kUser, 3, MailboxOverflow::kDropNewest),
              Mailbox::PushResult::kQueued);
  }
  EXPECT_EQ(box.Push(Mail::Of(3), MailClass::kUser, 3, MailboxOverflow::kDropNewest),
            Mailbox::PushResult::kDroppedNewest);
  EXPECT_EQ(Drain(box), (std::vector<int>{0, 1, 2}));
}

TEST(MailboxTest, DropOldestKeepsTheLatest) {
  Mailbox box;
  for (int i = 0; i < 5; ++i)
    box.Push(Mail::Of(i), MailClass::kUser, 3, MailboxOverflow::kDropOldest);
  EXPECT_EQ(box.user_mail(), 3u);
  EXPECT_EQ(Drain(box), (std::vector<int>{2, 3, 4}));
}

TEST(MailboxTest, CloseActorQueuesNothingAtCapacity) {
  Mailbox box;
  box.Push(Mail::Of(1), MailClass::kUser, 1, MailboxOverflow::kCloseActor);
  EXPECT_EQ(box.Push(Mail::Of(2), MailClass::kUser, 1, MailboxOverflow::kCloseActor),
            Mailbox::PushResult::kOverflow);
  EXPECT_EQ(box.size(), 1u);
  EXPECT_EQ(box.Clear(), 1u);
  EXPECT_TRUE(box.empty());
}

TEST(MailboxTest, SystemMailIsNeverRefusedNorEvicted) {
  Mailbox box;
  box.Push(Mail::Of(100), MailClass::kSystem, 1, MailboxOverflow::kDropOldest);
  box.Push(Mail::Of(1), MailClass::kUser, 1, MailboxOverflow::kDropOldest);
  // Full of user mail: a system mail still goes in, and drop-oldest evicts
  // the user mail, not the older system one.
  EXPECT_EQ(box.Push(Mail::Of(101), MailClass::kSystem, 1, MailboxOverflow::kDropNewest),
            Mailbox::PushResult::kQueued);
  EXPECT_EQ(box.Push(Mail::Of(2), MailClass::kUser, 1, MailboxOverflow::kDropOldest),
            Mailbox::PushResult::kEvictedOldest);
  EXPECT_EQ(Drain(box), (std::vector<int>{100, 101, 2}));
}

TEST(MailboxTest, ZeroCapacityRefusesAllUserMail) {
  Mailbox box;
  EXPECT_EQ(box.Push(Mail::Of(1), MailClass::kUser, 0, MailboxOverflow::kDropOldest),
            Mailbox::PushResult::kDroppedNewest);
  EXPECT_TRUE(box.empty());
}

// The queue is a ring (core/loop/mailbox.h): order holds when it wraps
// around and when it grows while wrapped.
TEST(MailboxTest, RingKeepsOrderAcrossWrapAndGrowth) {
  Mailbox box;
  std::vector<int> want;
  int next = 0;
  int expect = 0;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 7; ++i) {
      box.Push(Mail::Of(next++), MailClass::kUser, 1000, MailboxOverflow::kDropNewest);
    }
    for (int i = 0; i < 5; ++i) {
      ASSERT_FALSE(box.empty());
      EXPECT_EQ(*box.Pop().As<int>(), expect++);
    }
  }
  EXPECT_EQ(box.size(), 100u);
  EXPECT_EQ(box.user_mail(), 100u);
  for (int i = expect; i < next; ++i) want.push_back(i);
  EXPECT_EQ(Drain(box), want);
  EXPECT_EQ(box.user_mail(), 0u);
}

TEST(MailboxTest, DropOldestAcrossTheWrap) {
  Mailbox box;
  // Move the ring's head forward so the queue wraps.
  for (int i = 0; i < 6; ++i)
    box.Push(Mail::Of(-1), MailClass::kUser, 4, MailboxOverflow::kDropOldest);
  EXPECT_EQ(Drain(box), (std::vector<int>{-1, -1, -1, -1}));
  box.Push(Mail::Of(100), MailClass::kSystem, 4, MailboxOverflow::kDropOldest);
  for (int i = 0; i < 6; ++i) {
    Mail evicted;
    const Mailbox::PushResult result =
        box.Push(Mail::Of(i), MailClass::kUser, 4, MailboxOverflow::kDropOldest, &evicted);
    if (i < 4) {
      EXPECT_EQ(result, Mailbox::PushResult::kQueued);
      EXPECT_TRUE(evicted.empty());
    } else {
      EXPECT_EQ(result, Mailbox::PushResult::kEvictedOldest);
      ASSERT_NE(evicted.Get<int>(), nullptr);
      EXPECT_EQ(*evicted.Get<int>(), i - 4);
    }
  }
  EXPECT_EQ(Drain(box), (std::vector<int>{100, 2, 3, 4, 5}));
}

// Eviction takes the oldest user mail; system mail before and after it keeps
// its place and order.
TEST(MailboxTest, DropOldestKeepsSystemMailAroundTheEvictedOne) {
  Mailbox box;
  box.Push(Mail::Of(-1), MailClass::kSystem, 2, MailboxOverflow::kDropOldest);
  box.Push(Mail::Of(1), MailClass::kUser, 2, MailboxOverflow::kDropOldest);
  box.Push(Mail::Of(-2), MailClass::kSystem, 2, MailboxOverflow::kDropOldest);
  box.Push(Mail::Of(2), MailClass::kUser, 2, MailboxOverflow::kDropOldest);
  Mail evicted;
  EXPECT_EQ(box.Push(Mail::Of(3), MailClass::kUser, 2, MailboxOverflow::kDropOldest, &evicted),
            Mailbox::PushResult::kEvictedOldest);
  ASSERT_NE(evicted.Get<int>(), nullptr);
  EXPECT_EQ(*evicted.Get<int>(), 1);
  EXPECT_EQ(box.user_mail(), 2u);
  EXPECT_EQ(Drain(box), (std::vector<int>{-1, -2, 2, 3}));
}

// A ring a burst grew large is freed once emptied; a small one is kept.
TEST(MailboxTest, ALargeRingIsFreedOnceEmptied) {
  Mailbox box;
  for (int i = 0; i < 10; ++i) {
    box.Push(Mail::Of(i), MailClass::kUser, 5000, MailboxOverflow::kDropNewest);
  }
  Drain(box);
  EXPECT_EQ(box.capacity(), 16u);  // kept for the next mail
  for (int i = 0; i < 1000; ++i) {
    box.Push(Mail::Of(i), MailClass::kUser, 5000, MailboxOverflow::kDropNewest);
  }
  EXPECT_EQ(box.capacity(), 1024u);
  const std::vector<int> drained = Drain(box);
  EXPECT_EQ(drained.size(), 1000u);
  EXPECT_EQ(drained.back(), 999);
  EXPECT_EQ(box.capacity(), 0u);
  box.Push(Mail::Of(7), MailClass::kUser, 5000, MailboxOverflow::kDropNewest);
  EXPECT_EQ(Drain(box), (std::vector<int>{7}));
}

TEST(MailboxTest, ClearHandsOverEveryWaitingMailOnce) {
  Mailbox box;
  for (int i = 0; i < 10; ++i) {
    box.Push(Mail::Of(i), i % 2 == 0 ? MailClass::kUser : MailClass::kSystem, 100,
             MailboxOverflow::kDropNewest);
  }
  std::vector<int> seen;
  EXPECT_EQ(box.Clear([&](Mail& mail) { seen.push_back(*mail.Get<int>()); }), 5u);
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_TRUE(box.empty());
  // Usable again after a Clear.
  box.Push(Mail::Of(42), MailClass::kUser, 1, MailboxOverflow::kDropNewest);
  EXPECT_EQ(Drain(box), (std::vector<int>{42}));
}

TEST(MailboxTest, PolicyNamesRoundTrip) {
  for (MailboxOverflow p :
       {MailboxOverflow::kDropNewest, MailboxOverflow::kDropOldest, MailboxOverflow::kCloseActor}) {
    EXPECT_EQ(*ParseMailboxOverflow(MailboxOverflowName(p)), p);
  }
  EXPECT_FALSE(ParseMailboxOverflow("drop-everything").ok());
}

}  // namespace
}  // namespace troupe
