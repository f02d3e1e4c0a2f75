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

TEST(MailboxTest, PolicyNamesRoundTrip) {
  for (MailboxOverflow p :
       {MailboxOverflow::kDropNewest, MailboxOverflow::kDropOldest, MailboxOverflow::kCloseActor}) {
    EXPECT_EQ(*ParseMailboxOverflow(MailboxOverflowName(p)), p);
  }
  EXPECT_FALSE(ParseMailboxOverflow("drop-everything").ok());
}

}  // namespace
}  // namespace troupe
