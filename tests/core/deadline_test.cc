#include "core/base/deadline.h"

#include "gtest/gtest.h"

namespace troupe {
namespace {

using Clock = SteadyClock;

TEST(DeadlineTest, FiniteDurationsAdd) {
  const Clock::time_point now = Clock::now();
  EXPECT_EQ(DeadlineAfter(now, absl::Milliseconds(5)), now + std::chrono::milliseconds(5));
  EXPECT_EQ(DeadlineAfter(now, absl::ZeroDuration()), now);
  EXPECT_EQ(DeadlineAfter(now, -absl::Seconds(3)), now);  // never in the past
}

TEST(DeadlineTest, InfiniteAndHugeSaturateInsteadOfWrapping) {
  const Clock::time_point now = Clock::now();
  // A naive now + ToChronoNanoseconds(inf) wraps into the past: every
  // "--idle-timeout=inf" connection would close at once.
  EXPECT_EQ(DeadlineAfter(now, absl::InfiniteDuration()), Clock::time_point::max());
  EXPECT_EQ(DeadlineAfter(now, absl::Hours(24 * 365 * 1000)), Clock::time_point::max());
  EXPECT_GT(DeadlineAfter(now, absl::Hours(24 * 365 * 100)), now);
}

TEST(DeadlineTest, OnlyFiniteSetTimeoutsAreOn) {
  EXPECT_TRUE(IsFiniteTimeout(absl::Seconds(1)));
  EXPECT_FALSE(IsFiniteTimeout(absl::ZeroDuration()));
  EXPECT_FALSE(IsFiniteTimeout(-absl::Seconds(1)));
  EXPECT_FALSE(IsFiniteTimeout(absl::InfiniteDuration()));
}

}  // namespace
}  // namespace troupe
