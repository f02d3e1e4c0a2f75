#include "core/loop/mail.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace troupe {
namespace {

// Counts its constructions and destructions, so a test can check that every
// value a Mail held was destroyed exactly once. `Pad` bytes make it larger
// (to go to the heap).
struct Tally {
  int made = 0;
  int destroyed = 0;
  int live() const { return made - destroyed; }
};

template <size_t Pad>
struct Counted {
  explicit Counted(Tally& t, int v) : tally(&t), value(v) { ++tally->made; }
  Counted(Counted&& other) noexcept : tally(other.tally), value(other.value) { ++tally->made; }
  Counted& operator=(Counted&&) = delete;
  ~Counted() { ++tally->destroyed; }
  Tally* tally;
  int value;
  std::array<char, Pad> pad{};
};
using SmallCounted = Counted<8>;
using LargeCounted = Counted<64>;

struct alignas(64) OverAligned {
  int value = 0;
};

struct ThrowingMove {
  explicit ThrowingMove(int v) : value(v) {}
  ThrowingMove(ThrowingMove&& other) noexcept(false) : value(other.value) {}
  int value;
};

struct Pod48 {
  uint64_t words[6];
};
struct Pod56 {
  uint64_t words[7];
};
struct Note {
  std::string text;
};

static_assert(Mail::kHeldInline<uint64_t>);
static_assert(Mail::kHeldInline<std::string>);
static_assert(Mail::kHeldInline<absl::Status>);
static_assert(Mail::kHeldInline<std::shared_ptr<const Note>>);
static_assert(Mail::kHeldInline<Pod48>);
static_assert(Mail::kHeldInline<SmallCounted>);
static_assert(!Mail::kHeldInline<Pod56>);
static_assert(!Mail::kHeldInline<LargeCounted>);
static_assert(!Mail::kHeldInline<OverAligned>);
static_assert(!Mail::kHeldInline<ThrowingMove>);
static_assert(sizeof(Mail) == 80);
static_assert(std::is_nothrow_move_constructible_v<Mail>);
static_assert(!std::is_copy_constructible_v<Mail>);

TEST(MailTest, EmptyHasNothingAndNoReturnAddress) {
  Mail mail;
  EXPECT_TRUE(mail.empty());
  EXPECT_FALSE(mail.Is<int>());
  EXPECT_EQ(mail.Get<int>(), nullptr);
  EXPECT_EQ(mail.As<int>(), nullptr);
  mail.set_return_address(ReturnAddress{ConnectionId{0, 1, 1}, 7});
  EXPECT_FALSE(mail.return_address().valid());
}

TEST(MailTest, InlineValueReadAndMovedOut) {
  Mail mail = Mail::Of(std::string("hello"));
  EXPECT_FALSE(mail.empty());
  EXPECT_TRUE(mail.Is<std::string>());
  EXPECT_FALSE(mail.Is<int>());
  EXPECT_EQ(mail.Get<int>(), nullptr);
  ASSERT_NE(mail.Get<std::string>(), nullptr);
  EXPECT_EQ(*mail.Get<std::string>(), "hello");
  std::string* text = mail.As<std::string>();
  ASSERT_NE(text, nullptr);
  const std::string taken = std::move(*text);
  EXPECT_EQ(taken, "hello");
}

TEST(MailTest, ALongStringSurvivesMoves) {
  const std::string long_text(1000, 'x');
  Mail a = Mail::Of(long_text);
  Mail b = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the contract
  Mail c;
  c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
  ASSERT_NE(c.Get<std::string>(), nullptr);
  EXPECT_EQ(*c.Get<std::string>(), long_text);
}

TEST(MailTest, PodOfAnySizeKeepsItsBytes) {
  Pod48 small{{1, 2, 3, 4, 5, 6}};
  Pod56 large{{1, 2, 3, 4, 5, 6, 7}};
  Mail a = Mail::Of(small);
  Mail b = Mail::Of(large);
  Mail a2 = std::move(a);
  Mail b2 = std::move(b);
  ASSERT_NE(a2.Get<Pod48>(), nullptr);
  ASSERT_NE(b2.Get<Pod56>(), nullptr);
  EXPECT_EQ(a2.Get<Pod48>()->words[5], 6u);
  EXPECT_EQ(b2.Get<Pod56>()->words[6], 7u);
  EXPECT_FALSE(a2.Is<Pod56>());
}

template <typename T>
void ExpectDestroyedOnce() {
  Tally tally;
  {
    Mail a = Mail::Of(T(tally, 5));
    Mail b = std::move(a);
    Mail c;
    c = std::move(b);
    EXPECT_EQ(tally.live(), 1);
    ASSERT_NE(c.Get<T>(), nullptr);
    EXPECT_EQ(c.Get<T>()->value, 5);
    // Assigning over a Mail ends the value it held, once.
    c = Mail::Of(7);
    EXPECT_EQ(tally.live(), 0);
    Mail d = Mail::Of(T(tally, 6));
    EXPECT_EQ(tally.live(), 1);
  }
  EXPECT_EQ(tally.live(), 0);
  EXPECT_GT(tally.made, 0);
}

TEST(MailTest, InlineValueIsDestroyedExactlyOnce) { ExpectDestroyedOnce<SmallCounted>(); }
TEST(MailTest, HeapValueIsDestroyedExactlyOnce) { ExpectDestroyedOnce<LargeCounted>(); }

TEST(MailTest, InlineMovesMoveTheValueHeapMovesThePointer) {
  Tally small;
  Tally large;
  {
    Mail a = Mail::Of(SmallCounted(small, 1));
    Mail b = Mail::Of(LargeCounted(large, 1));
    const int small_made = small.made;
    const int large_made = large.made;
    Mail a2 = std::move(a);
    Mail b2 = std::move(b);
    EXPECT_EQ(small.made, small_made + 1);  // moved into the new Mail
    EXPECT_EQ(large.made, large_made);      // the same heap object
    EXPECT_EQ(small.live(), 1);
    EXPECT_EQ(large.live(), 1);
  }
  EXPECT_EQ(small.live(), 0);
  EXPECT_EQ(large.live(), 0);
}

TEST(MailTest, SharedIsReadableNeverWritable) {
  Tally tally;
  {
    auto note = std::make_shared<const SmallCounted>(tally, 3);
    Mail a = Mail::Share(note);
    Mail b = Mail::Share(note);
    EXPECT_EQ(note.use_count(), 3);
    EXPECT_TRUE(a.Is<SmallCounted>());
    EXPECT_EQ(a.Get<SmallCounted>(), note.get());
    EXPECT_EQ(b.Get<SmallCounted>(), note.get());
    EXPECT_EQ(a.As<SmallCounted>(), nullptr);
    Mail c = std::move(a);
    EXPECT_EQ(note.use_count(), 3);
    EXPECT_EQ(c.Get<SmallCounted>(), note.get());
    c = Mail();
    EXPECT_EQ(note.use_count(), 2);
  }
  EXPECT_EQ(tally.live(), 0);
}

TEST(MailTest, SharedNullIsSharedNothing) {
  Mail mail = Mail::Share(std::shared_ptr<const Note>());
  EXPECT_FALSE(mail.empty());
  EXPECT_TRUE(mail.Is<Note>());
  EXPECT_EQ(mail.Get<Note>(), nullptr);
}

TEST(MailTest, ReturnAddressTravelsWithMoves) {
  const ReturnAddress address{ConnectionId{1, 2, 3}, 42};
  auto check = [&](Mail mail) {
    mail.set_return_address(address);
    Mail moved = std::move(mail);
    Mail assigned = Mail::Of(0);
    assigned = std::move(moved);
    EXPECT_TRUE(assigned.return_address().to == address.to);
    EXPECT_EQ(assigned.return_address().tag, 42u);
    EXPECT_FALSE(moved.return_address().valid());  // NOLINT(bugprone-use-after-move)
  };
  check(Mail::Of(uint64_t{1}));
  check(Mail::Of(std::string("inline")));
  check(Mail::Of(Pod56{}));
  check(Mail::Share(std::make_shared<const Note>()));
}

TEST(MailTest, OverAlignedGoesToTheHeapAligned) {
  Mail mail = Mail::Of(OverAligned{9});
  Mail moved = std::move(mail);
  const OverAligned* value = moved.Get<OverAligned>();
  ASSERT_NE(value, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(value) % 64, 0u);
  EXPECT_EQ(value->value, 9);
}

TEST(MailTest, ThrowingMoveGoesToTheHeapAndWorks) {
  Mail mail = Mail::Of(ThrowingMove(4));
  Mail moved = std::move(mail);
  ThrowingMove* value = moved.As<ThrowingMove>();
  ASSERT_NE(value, nullptr);
  EXPECT_EQ(value->value, 4);
}

// A Mail inside the value of the Mail it is moved into (an envelope opened
// in place): the inner one must be taken out before the envelope ends.
struct Envelope {
  Mail inner;
  std::array<char, 64> pad{};  // on the heap, as a real envelope would be
};

TEST(MailTest, AMailMovedOutOfItsOwnValueSurvives) {
  Mail mail = Mail::Of(Envelope{Mail::Of(std::string(100, 'p')), {}});
  ASSERT_FALSE(Mail::kHeldInline<Envelope>);
  mail = std::move(mail.As<Envelope>()->inner);
  const std::string* payload = mail.Get<std::string>();
  ASSERT_NE(payload, nullptr);
  EXPECT_EQ(*payload, std::string(100, 'p'));
  // Self-move leaves it as it was.
  Mail& same = mail;
  mail = std::move(same);
  ASSERT_NE(mail.Get<std::string>(), nullptr);
}

}  // namespace
}  // namespace troupe
