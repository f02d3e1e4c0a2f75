#include "core/net/buffer.h"

#include <string>

#include "gtest/gtest.h"

namespace troupe {
namespace {

TEST(BufferTest, StartsEmptyWithoutMemory) {
  Buffer b;
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(b.capacity(), 0u);
}

TEST(BufferTest, AppendThenConsumeAll) {
  Buffer b;
  b.Append("hello");
  EXPECT_EQ(b.view(), "hello");
  b.Consume(5);
  EXPECT_TRUE(b.empty());
}

TEST(BufferTest, ConsumePartialKeepsRest) {
  Buffer b;
  b.Append("hello world");
  b.Consume(6);
  EXPECT_EQ(b.view(), "world");
  b.Append("!");
  EXPECT_EQ(b.view(), "world!");
}

TEST(BufferTest, GrowsAndKeepsBytesInOrder) {
  Buffer b;
  std::string expected;
  for (int i = 0; i < 10000; ++i) {
    const std::string piece = std::to_string(i) + ",";
    b.Append(piece);
    expected += piece;
  }
  EXPECT_EQ(b.view(), expected);
  EXPECT_GE(b.capacity(), expected.size());
}

TEST(BufferTest, SlidesInsteadOfGrowingWhenFrontIsFree) {
  Buffer b;
  b.Append(std::string(1000, 'a'));
  const size_t capacity = b.capacity();
  b.Consume(990);  // 10 live bytes, most of the buffer free at the front
  b.Append(std::string(capacity - 20, 'b'));
  EXPECT_EQ(b.capacity(), capacity);
  EXPECT_EQ(b.view(), std::string(10, 'a') + std::string(capacity - 20, 'b'));
}

TEST(BufferTest, EmptyingRewindsSoWholeCapacityIsWritable) {
  Buffer b;
  b.Append("abc");
  b.Consume(3);
  EXPECT_EQ(b.writable_size(), b.capacity());
}

TEST(BufferTest, DirectWriteWithCommit) {
  Buffer b;
  b.Reserve(4);
  ASSERT_GE(b.writable_size(), 4u);
  std::memcpy(b.writable_data(), "wxyz", 4);
  b.Commit(4);
  EXPECT_EQ(b.view(), "wxyz");
}

TEST(BufferTest, ReleaseFreesMemory) {
  Buffer b;
  b.Append(std::string(100000, 'x'));
  b.Consume(100000);
  b.Release();
  EXPECT_EQ(b.capacity(), 0u);
  b.Append("again");
  EXPECT_EQ(b.view(), "again");
}

TEST(BufferTest, MovedFromBufferIsEmptyAndUsable) {
  Buffer a;
  a.Append("payload");
  Buffer b(std::move(a));
  EXPECT_EQ(b.view(), "payload");
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the contract under test
  EXPECT_EQ(a.capacity(), 0u);
  a.Append("again");
  EXPECT_EQ(a.view(), "again");
  Buffer c;
  c = std::move(b);
  EXPECT_EQ(c.view(), "payload");
  b.Append("fine");
  EXPECT_EQ(b.view(), "fine");
}

TEST(BufferDeathTest, ConsumingTooMuchAborts) {
  Buffer b;
  b.Append("ab");
  EXPECT_DEATH(b.Consume(3), "Consume past");
}

}  // namespace
}  // namespace troupe
