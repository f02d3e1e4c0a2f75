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
  absl::StatusOr<size_t> used = codec.Parse("a\nb\nc\n", [&](std::string_view) {
    return ++calls < 2;
  });
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
