#include "actors/codec.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace troupe {
namespace {

struct Parsed {
  absl::StatusOr<size_t> used;
  std::vector<std::string> messages;
};

Parsed ParseAll(const Codec& codec, std::string_view data) {
  Parsed p;
  p.used = codec.Parse(data, [&](std::string_view m) {
    p.messages.emplace_back(m);
    return true;
  });
  return p;
}

std::string Frame(std::string_view payload) {
  const uint32_t n = static_cast<uint32_t>(payload.size());
  std::string out = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                     static_cast<char>(n >> 8), static_cast<char>(n)};
  out.append(payload);
  return out;
}

TEST(CodecTest, RawHandsOverEverything) {
  Codec codec({.kind = CodecKind::kRaw});
  Parsed p = ParseAll(codec, "abc\ndef");
  ASSERT_TRUE(p.used.ok());
  EXPECT_EQ(*p.used, 7u);
  EXPECT_EQ(p.messages, std::vector<std::string>{"abc\ndef"});
}

TEST(CodecTest, LinesSplitsManyInOneReadAndKeepsPartialTail) {
  Codec codec({.kind = CodecKind::kLines});
  Parsed p = ParseAll(codec, "one\ntwo\r\n\nthr");
  ASSERT_TRUE(p.used.ok());
  EXPECT_EQ(*p.used, 10u);  // "thr" waits for its newline
  EXPECT_EQ(p.messages, (std::vector<std::string>{"one", "two", ""}));
}

TEST(CodecTest, LinesAcrossReadsReassemble) {
  Codec codec({.kind = CodecKind::kLines});
  std::string pending;
  std::vector<std::string> got;
  for (std::string_view piece : {"he", "llo\nwo", "rld", "\r", "\n"}) {
    pending.append(piece);
    absl::StatusOr<size_t> used = codec.Parse(pending, [&](std::string_view m) {
      got.emplace_back(m);
      return true;
    });
    ASSERT_TRUE(used.ok());
    pending.erase(0, *used);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"hello", "world"}));
  EXPECT_TRUE(pending.empty());
}

TEST(CodecTest, LinesResumeTheSearchWhereTheLastReadLeftOff) {
  // A long line arriving in many reads: each Parse must search only the new
  // bytes, not the whole partial line again (quadratic in its length).
  Codec codec({.kind = CodecKind::kLines, .max_line = 1 << 20});
  std::string pending;
  size_t scanned = 0;
  std::vector<std::string> got;
  const std::string chunk(1000, 'a');
  for (int i = 0; i < 100; ++i) {
    pending.append(chunk);
    absl::StatusOr<size_t> used = codec.Parse(
        pending,
        [&](std::string_view m) {
          got.emplace_back(m);
          return true;
        },
        &scanned);
    ASSERT_TRUE(used.ok());
    ASSERT_EQ(*used, 0u);
    ASSERT_EQ(scanned, pending.size()) << "the whole partial line counts as searched";
  }
  // Proof that the offset is honoured: a "\n" planted inside the searched
  // prefix is not looked at again...
  pending[10] = '\n';
  absl::StatusOr<size_t> used = codec.Parse(
      pending,
      [&](std::string_view m) {
        got.emplace_back(m);
        return true;
      },
      &scanned);
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(*used, 0u);
  EXPECT_TRUE(got.empty());
  // ...while a fresh search (scanned = 0) finds it.
  size_t fresh = 0;
  used = codec.Parse(
      pending,
      [&](std::string_view m) {
        got.emplace_back(m);
        return true;
      },
      &fresh);
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(*used, 11u);
  EXPECT_EQ(fresh, pending.size() - 11);
}

TEST(CodecTest, LinesWithAResumedSearchStillReassembleAndLimit) {
  Codec codec({.kind = CodecKind::kLines, .max_line = 8});
  std::string pending;
  size_t scanned = 0;
  std::vector<std::string> got;
  for (std::string_view piece : {"he", "llo\nwo", "rld", "\r", "\n", "x", "yz\n"}) {
    pending.append(piece);
    absl::StatusOr<size_t> used = codec.Parse(
        pending,
        [&](std::string_view m) {
          got.emplace_back(m);
          return true;
        },
        &scanned);
    ASSERT_TRUE(used.ok());
    pending.erase(0, *used);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"hello", "world", "xyz"}));
  EXPECT_EQ(scanned, 0u);
  // The limit still holds across resumed searches.
  pending = "12345";
  ASSERT_TRUE(codec
                  .Parse(
                      pending, [](std::string_view) { return true; }, &scanned)
                  .ok());
  pending += "67890";
  EXPECT_FALSE(codec
                   .Parse(
                       pending, [](std::string_view) { return true; }, &scanned)
                   .ok());
}

TEST(CodecTest, MaxPartialBytesCoversTheLargestValidPartialMessage) {
  EXPECT_EQ(Codec({.kind = CodecKind::kRaw}).MaxPartialBytes(), 0u);
  EXPECT_EQ(Codec({.kind = CodecKind::kLines, .max_line = 10}).MaxPartialBytes(), 11u);
  EXPECT_EQ(Codec({.kind = CodecKind::kLength, .max_frame = 100}).MaxPartialBytes(), 104u);
}

TEST(CodecTest, LinesAtTheLimitPassAndAboveFail) {
  Codec codec({.kind = CodecKind::kLines, .max_line = 4});
  EXPECT_TRUE(ParseAll(codec, "abcd\n").used.ok());
  EXPECT_TRUE(ParseAll(codec, "abcd\r\n").used.ok());
  Parsed too_long = ParseAll(codec, "abcde\n");
  ASSERT_FALSE(too_long.used.ok());
  EXPECT_NE(too_long.used.status().message().find("longer than 4"), absl::string_view::npos);
  // No newline in sight and already past the limit: fail without waiting.
  EXPECT_FALSE(ParseAll(codec, "abcdefgh").used.ok());
  // Still possibly valid: wait.
  Parsed waiting = ParseAll(codec, "abcd");
  ASSERT_TRUE(waiting.used.ok());
  EXPECT_EQ(*waiting.used, 0u);
}

TEST(CodecTest, LengthFramesManyAndPartial) {
  Codec codec({.kind = CodecKind::kLength});
  const std::string data = Frame("hi") + Frame("") + Frame("there") + Frame("tail").substr(0, 6);
  Parsed p = ParseAll(codec, data);
  ASSERT_TRUE(p.used.ok());
  EXPECT_EQ(*p.used, 6u + 4u + 9u);
  EXPECT_EQ(p.messages, (std::vector<std::string>{"hi", "", "there"}));
}

TEST(CodecTest, LengthAboveLimitIsRejectedFromTheHeaderAlone) {
  Codec codec({.kind = CodecKind::kLength, .max_frame = 10});
  Parsed p = ParseAll(codec, std::string("\x00\x00\x00\x0b", 4));
  ASSERT_FALSE(p.used.ok());
  EXPECT_NE(p.used.status().message().find("exceeds the limit of 10"), absl::string_view::npos);
  // A huge declared length (4 GiB - 1) is refused too, not awaited.
  EXPECT_FALSE(ParseAll(codec, std::string("\xff\xff\xff\xff", 4)).used.ok());
}

TEST(CodecTest, ParseStopsWhenCallbackSaysSo) {
  Codec codec({.kind = CodecKind::kLines});
  int calls = 0;
  absl::StatusOr<size_t> used =
      codec.Parse("a\nb\nc\n", [&](std::string_view) { return ++calls < 2; });
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(*used, 4u);  // "c\n" left for later
}

TEST(CodecTest, KindNamesRoundTrip) {
  for (CodecKind kind : {CodecKind::kRaw, CodecKind::kLines, CodecKind::kLength}) {
    EXPECT_EQ(*ParseCodecKind(CodecKindName(kind)), kind);
  }
  EXPECT_FALSE(ParseCodecKind("json").ok());
}

}  // namespace
}  // namespace troupe
