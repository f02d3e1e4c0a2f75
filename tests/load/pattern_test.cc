#include "load/pattern.h"

#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"

namespace troupe::load {
namespace {

// `n` bytes of connection `index`'s stream from `offset` on, as a server
// that echoes correctly sends them back.
std::vector<uint8_t> Echo(const Stream& stream, int index, uint64_t offset, size_t n) {
  const uint8_t* at = stream.At(SeedOf(index), offset);
  return std::vector<uint8_t>(at, at + n);
}

std::optional<std::string> Check(const Stream& stream, int index, uint64_t received, uint64_t sent,
                                 const std::vector<uint8_t>& data) {
  return CheckEcho(index, stream.At(SeedOf(index), received), received, sent, data.data(),
                   data.size());
}

TEST(LoadClientPatternTest, ACorrectEchoPasses) {
  const Stream stream(64);
  for (int index : {0, 1, 7, 65520, 65521}) {
    for (uint64_t received : {uint64_t{0}, uint64_t{1000}, uint64_t{65500}}) {
      EXPECT_EQ(
          Check(stream, index, received, received + 4096, Echo(stream, index, received, 4096)),
          std::nullopt)
          << index << " at " << received;
    }
  }
}

TEST(LoadClientPatternTest, ACorruptedByteIsReportedWhereItIs) {
  const Stream stream(64);
  std::vector<uint8_t> echo = Echo(stream, 3, 1000, 100);
  const uint8_t expected = echo[37];
  echo[37] ^= 0x01;
  EXPECT_EQ(Check(stream, 3, 1000, 1100, echo),
            absl::StrFormat("connection 3: echo mismatch at stream offset "
                            "1037: expected byte 0x%02x, got 0x%02x",
                            expected, expected ^ 0x01));
  // The last byte counts as much as the first.
  echo = Echo(stream, 3, 1000, 100);
  echo.back() ^= 0x80;
  const std::optional<std::string> last = Check(stream, 3, 1000, 1100, echo);
  ASSERT_TRUE(last.has_value());
  EXPECT_TRUE(absl::StrContains(*last, "stream offset 1099")) << *last;
}

TEST(LoadClientPatternTest, ReorderedBytesAreCaught) {
  const Stream stream(64);
  std::vector<uint8_t> echo = Echo(stream, 5, 0, 256);
  size_t k = 10;
  while (echo[k] == echo[k + 1]) ++k;  // Two neighbours that differ.
  std::swap(echo[k], echo[k + 1]);
  const std::optional<std::string> error = Check(stream, 5, 0, 256, echo);
  ASSERT_TRUE(error.has_value());
  EXPECT_TRUE(absl::StrContains(*error, absl::StrFormat("stream offset %d:", k))) << *error;
}

TEST(LoadClientPatternTest, ADroppedOrDuplicatedByteIsCaught) {
  const Stream stream(64);
  const std::vector<uint8_t> sent = Echo(stream, 2, 0, 300);
  std::vector<uint8_t> dropped = sent;
  dropped.erase(dropped.begin() + 50);
  EXPECT_TRUE(Check(stream, 2, 0, 300, dropped).has_value());
  std::vector<uint8_t> duplicated(sent.begin(), sent.end() - 1);
  duplicated.insert(duplicated.begin() + 50, sent[50]);
  EXPECT_TRUE(Check(stream, 2, 0, 300, duplicated).has_value());
}

TEST(LoadClientPatternTest, BytesBeyondWhatWasSentAreCaught) {
  const Stream stream(64);
  // Right bytes, but 10 more than were sent: a server that echoes twice.
  EXPECT_EQ(Check(stream, 4, 100, 110, Echo(stream, 4, 100, 20)),
            "connection 4: echo mismatch: received 20 bytes up to stream "
            "offset 120, but only 110 were sent");
}

TEST(LoadClientPatternTest, AnotherConnectionsBytesAreCaught) {
  const Stream stream(64);
  EXPECT_TRUE(Check(stream, 0, 0, 64, Echo(stream, 1, 0, 64)).has_value());
  std::set<uint64_t> seeds;
  for (int i = 0; i < static_cast<int>(Stream::kPeriod); ++i) {
    seeds.insert(SeedOf(i));
  }
  EXPECT_EQ(seeds.size(), Stream::kPeriod);  // Every connection its own.
}

TEST(LoadClientPatternTest, APowerOfTwoBlockDoesNotRepeat) {
  // A server that replays a 4 KiB buffer must not pass by chance.
  const Stream stream(64);
  for (uint64_t block : {uint64_t{1024}, uint64_t{4096}, uint64_t{16384}}) {
    EXPECT_NE(std::memcmp(stream.At(SeedOf(0), 0), stream.At(SeedOf(0), block), block), 0) << block;
  }
}

TEST(LoadClientPatternTest, TheStreamIsContiguousForAChunk) {
  // Across the end of the period too: a recv() of kStreamChunk bytes is
  // compared with one range.
  const Stream stream(64);
  const uint64_t seed = SeedOf(9);
  const uint64_t offset = Stream::kPeriod - seed - 100;  // Wraps after 100.
  const uint8_t* range = stream.At(seed, offset);
  for (size_t k = 0; k < kStreamChunk; k += 97) {
    EXPECT_EQ(range[k], *stream.At(seed, offset + k)) << k;
  }
  EXPECT_EQ(range[kStreamChunk - 1], *stream.At(seed, offset + kStreamChunk - 1));
}

TEST(LoadClientPatternTest, AMessageCompletesOnlyWithItsLastByte) {
  const Stream fixed(64);
  EXPECT_EQ(fixed.EndOf(3), 192u);
  EXPECT_EQ(fixed.CompletedBy(127, 0), 1u);  // Truncated: one byte short.
  EXPECT_EQ(fixed.CompletedBy(128, 1), 2u);

  const Script script({"hello", "world!!"});
  EXPECT_EQ(script.bytes, "helloworld!!");
  const Stream scripted(script);
  EXPECT_TRUE(scripted.script_mode());
  EXPECT_EQ(scripted.message_count(), 2u);
  EXPECT_EQ(scripted.EndOf(0), 0u);
  EXPECT_EQ(scripted.EndOf(1), 5u);
  EXPECT_EQ(scripted.EndOf(2), 12u);
  EXPECT_EQ(scripted.CompletedBy(4, 0), 0u);
  EXPECT_EQ(scripted.CompletedBy(11, 0), 1u);
  EXPECT_EQ(scripted.CompletedBy(12, 1), 2u);
  // Script mode: every connection's stream is the script itself.
  EXPECT_EQ(std::memcmp(scripted.At(SeedOf(1), 5), "world!!", 7), 0);
  EXPECT_EQ(Check(scripted, 1, 5, 12, {'w', 'o', 'r', 'l', 'd', '!', '?'}),
            "connection 1: echo mismatch at stream offset 11: expected byte "
            "0x21, got 0x3f");
}

}  // namespace
}  // namespace troupe::load
