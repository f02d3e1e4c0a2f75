#include "load/pattern.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "load/framing.h"

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

// Framed streams (LoadFraming lines and length): every message one frame.

// `n` bytes of the stream with `seed` from `offset` on, one At() per byte:
// what the stream is, whatever At() promises about contiguity.
std::vector<uint8_t> ByteWise(const Stream& stream, uint64_t seed, uint64_t offset, size_t n) {
  std::vector<uint8_t> bytes(n);
  for (size_t k = 0; k < n; ++k) bytes[k] = *stream.At(seed, offset + k);
  return bytes;
}

TEST(LoadClientPatternTest, ALineIsTextWithoutNewlinesThenANewline) {
  for (const uint64_t size : {uint64_t{2}, uint64_t{3}, uint64_t{64}, uint64_t{1000}}) {
    const Stream stream(size, LoadFraming::kLines);
    EXPECT_EQ(stream.framing(), LoadFraming::kLines);
    EXPECT_EQ(stream.period() % size, 0u) << size;
    for (const uint64_t n : {uint64_t{0}, uint64_t{77}, uint64_t{65520}}) {
      const uint64_t seed = stream.SeedFor(n);
      ASSERT_EQ(seed % size, 0u) << "stream " << n << " starts inside a line";
      // Once round the table and into the wrap-around, read as the client
      // reads: a contiguous range per chunk. Misplaced bytes are counted,
      // not asserted one by one (millions of them).
      const uint64_t length = stream.period() + 2 * size;
      uint64_t misplaced = 0;
      uint64_t first_misplaced = 0;
      for (uint64_t offset = 0; offset < length; offset += kStreamChunk) {
        const size_t chunk = static_cast<size_t>(std::min<uint64_t>(kStreamChunk, length - offset));
        const uint8_t* range = stream.At(seed, offset);
        for (size_t k = 0; k < chunk; ++k) {
          const bool end = (offset + k) % size == size - 1;
          const bool newline = range[k] == '\n';
          if (end != newline || range[k] == '\r') {
            if (misplaced++ == 0) first_misplaced = offset + k;
          }
        }
      }
      EXPECT_EQ(misplaced, 0u) << "size " << size << ", stream " << n << ": first at offset "
                               << first_misplaced;
    }
  }
}

TEST(LoadClientPatternTest, ALengthFrameStartsWithItsPayloadLength) {
  for (const uint64_t size : {uint64_t{5}, uint64_t{100}, uint64_t{70000}}) {
    const Stream stream(size, LoadFraming::kLength);
    const uint64_t payload = size - 4;
    const uint8_t prefix[4] = {static_cast<uint8_t>(payload >> 24),
                               static_cast<uint8_t>(payload >> 16),
                               static_cast<uint8_t>(payload >> 8), static_cast<uint8_t>(payload)};
    for (const uint64_t n : {uint64_t{0}, uint64_t{5}, uint64_t{999}}) {
      const uint64_t seed = stream.SeedFor(n);
      ASSERT_EQ(seed % size, 0u);
      // Every frame of two rounds of the table.
      for (uint64_t frame = 0; frame * size < 2 * stream.period() + size; ++frame) {
        EXPECT_EQ(ByteWise(stream, seed, frame * size, 4), std::vector<uint8_t>(prefix, prefix + 4))
            << "size " << size << ", stream " << n << ", frame " << frame;
      }
    }
  }
}

TEST(LoadClientPatternTest, AFramedStreamIsContiguousForAChunkAcrossTheWrap) {
  for (const LoadFraming framing : {LoadFraming::kLines, LoadFraming::kLength}) {
    for (const uint64_t size : {uint64_t{64}, uint64_t{4096}, uint64_t{300000}}) {
      const Stream stream(size, framing);
      const uint64_t seed = stream.SeedFor(3);
      // 100 bytes before the end of the table.
      const uint64_t offset = stream.period() - seed % stream.period() - 100;
      const uint8_t* range = stream.At(seed, offset);
      const std::vector<uint8_t> expected = ByteWise(stream, seed, offset, kStreamChunk);
      EXPECT_EQ(std::memcmp(range, expected.data(), kStreamChunk), 0)
          << LoadFramingName(framing) << " " << size;
    }
  }
}

TEST(LoadClientPatternTest, FramedStreamsAreDistinctAndTheirFramesDiffer) {
  const Stream stream(64, LoadFraming::kLines);
  const uint64_t frames = stream.period() / 64;
  EXPECT_GE(frames, 16384u);  // 1 MiB of 64-byte frames at least.
  std::set<uint64_t> seeds;
  for (uint64_t n = 0; n < frames; ++n) seeds.insert(stream.SeedFor(n));
  EXPECT_EQ(seeds.size(), frames);  // Every connection its own start.
  // Neighbouring messages differ, so a dropped or repeated frame shows.
  EXPECT_NE(ByteWise(stream, 0, 0, 63), ByteWise(stream, 0, 64, 63));
  // Two frames at least, for the largest messages.
  const Stream large(kMaxFramedMessageSize, LoadFraming::kLength);
  EXPECT_EQ(large.period(), 2 * kMaxFramedMessageSize);
  EXPECT_NE(large.SeedFor(0), large.SeedFor(1));
}

TEST(LoadClientPatternTest, ARawStreamStartsWhereSeedOfSays) {
  const Stream stream(64);
  for (int i : {0, 1, 9, 65520, 65521, 100000}) {
    EXPECT_EQ(stream.SeedFor(static_cast<uint64_t>(i)), SeedOf(i)) << i;
  }
}

TEST(LoadClientPatternTest, ADroppedOrRepeatedFrameIsCaughtInsideIt) {
  for (const LoadFraming framing : {LoadFraming::kLines, LoadFraming::kLength}) {
    constexpr uint64_t kSize = 32;
    const Stream stream(kSize, framing);
    const uint64_t seed = stream.SeedFor(2);
    const std::vector<uint8_t> sent = ByteWise(stream, seed, 0, 10 * kSize);
    auto check = [&](const std::vector<uint8_t>& echo) {
      return CheckEcho(2, stream.At(seed, 0), 0, sent.size(), echo.data(), echo.size());
    };
    EXPECT_EQ(check(sent), std::nullopt);
    // Frame 3 dropped: frame 4 arrives in its place (in length framing
    // with the same prefix, so the mismatch is in the payload).
    std::vector<uint8_t> dropped = sent;
    dropped.erase(dropped.begin() + 3 * kSize, dropped.begin() + 4 * kSize);
    // Frame 3 twice: the copy arrives where frame 4 should.
    std::vector<uint8_t> repeated(sent.begin(), sent.begin() + 4 * kSize);
    repeated.insert(repeated.end(), sent.begin() + 3 * kSize, sent.end() - kSize);
    for (const auto& [what, echo, frame] : {std::tuple{"dropped", dropped, uint64_t{3}},
                                            std::tuple{"repeated", repeated, uint64_t{4}}}) {
      const std::optional<std::string> error = check(echo);
      ASSERT_TRUE(error.has_value()) << what;
      const size_t at = error->find("stream offset ");
      ASSERT_NE(at, std::string::npos) << *error;
      const uint64_t offset = std::stoull(error->substr(at + 14));
      EXPECT_GE(offset, frame * kSize) << what << ": " << *error;
      EXPECT_LT(offset, (frame + 1) * kSize) << what << ": " << *error;
    }
  }
}

}  // namespace
}  // namespace troupe::load
