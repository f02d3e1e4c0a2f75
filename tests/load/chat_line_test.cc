#include "load/chat_line.h"

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace troupe::load {
namespace {

// What a server hands a member: the sender's name, ": ", the line, no "\n".
std::string Received(const std::string& sent, const std::string& name = "127.0.0.1:40000") {
  return absl::StrCat(name, ": ", sent.substr(0, sent.size() - 1));
}

TEST(ChatLineTest, LineHasTheSizeAskedForAndParsesBack) {
  std::string line;
  AppendChatLine(3, 41, 1234567890, 64, &line);
  EXPECT_EQ(line.size(), 64u);
  EXPECT_EQ(line.back(), '\n');
  EXPECT_TRUE(line.starts_with("chat 3 41 1234567890 ")) << line;

  const std::string received = Received(line);
  const ParsedChatLine p = ParseChatLine(received, 64);
  ASSERT_EQ(p.kind, ChatLineKind::kChat) << p.error;
  EXPECT_EQ(p.name, "127.0.0.1:40000");
  EXPECT_EQ(p.talker, 3u);
  EXPECT_EQ(p.seq, 41u);
  EXPECT_EQ(p.send_ns, 1234567890);
}

TEST(ChatLineTest, ASizeBelowTheHeaderGetsTheHeaderAlone) {
  for (const size_t size : {1u, 10u, 12u, 13u}) {
    std::string line;
    AppendChatLine(0, 7, 99, size, &line);
    EXPECT_EQ(line, "chat 0 7 99\n") << size;
    const std::string received = Received(line);
    EXPECT_EQ(ParseChatLine(received, size).kind, ChatLineKind::kChat) << size;
  }
  // Room for the header, a space, one letter and the "\n": padded.
  std::string line;
  AppendChatLine(0, 7, 99, 14, &line);
  EXPECT_EQ(line.size(), 14u);
  EXPECT_EQ(ParseChatLine(Received(line), 14).kind, ChatLineKind::kChat);
}

TEST(ChatLineTest, IPv6NamesParse) {
  std::string line;
  AppendChatLine(1, 2, 3, 40, &line);
  const std::string received = Received(line, "[::1]:5000");
  const ParsedChatLine p = ParseChatLine(received, 40);
  ASSERT_EQ(p.kind, ChatLineKind::kChat) << p.error;
  EXPECT_EQ(p.name, "[::1]:5000");
}

TEST(ChatLineTest, HelloParses) {
  std::string line;
  AppendHelloLine(12, &line);
  EXPECT_EQ(line, "hello 12\n");
  const std::string received = Received(line);
  const ParsedChatLine p = ParseChatLine(received, 64);
  ASSERT_EQ(p.kind, ChatLineKind::kHello);
  EXPECT_EQ(p.seq, 12u);
}

TEST(ChatLineTest, EveryChangedByteIsCaught) {
  std::string line;
  AppendChatLine(5, 1000, 555, 80, &line);
  const std::string good = Received(line);
  const size_t payload = good.find(": ") + 2;
  for (size_t i = payload; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = bad[i] == 'x' ? 'y' : 'x';
    const ParsedChatLine p = ParseChatLine(bad, 80);
    EXPECT_EQ(p.kind, ChatLineKind::kBad) << "byte " << i << " changed: " << bad;
  }
}

TEST(ChatLineTest, MissingOrExtraBytesAreCaught) {
  std::string line;
  AppendChatLine(5, 1000, 555, 80, &line);
  const std::string good = Received(line);
  const size_t payload = good.find(": ") + 2;
  for (size_t i = payload; i < good.size(); ++i) {
    std::string shorter = good;
    shorter.erase(i, 1);
    EXPECT_NE(ParseChatLine(shorter, 80).kind, ChatLineKind::kChat) << shorter;
    std::string longer = good;
    longer.insert(i, 1, good[i]);
    EXPECT_NE(ParseChatLine(longer, 80).kind, ChatLineKind::kChat) << longer;
  }
}

TEST(ChatLineTest, MalformedLinesSayWhy) {
  EXPECT_EQ(ParseChatLine("chat 1 2 3", 64).kind, ChatLineKind::kBad);  // no name
  EXPECT_EQ(ParseChatLine(": chat 1 2 3", 64).kind, ChatLineKind::kBad);
  EXPECT_EQ(ParseChatLine("a: hi there", 64).kind, ChatLineKind::kBad);
  EXPECT_EQ(ParseChatLine("a: hello", 64).kind, ChatLineKind::kBad);
  EXPECT_EQ(ParseChatLine("a: hello 1x", 64).kind, ChatLineKind::kBad);
  EXPECT_EQ(ParseChatLine("a: chat 1 2", 64).kind, ChatLineKind::kBad);
  EXPECT_EQ(ParseChatLine("a: chat -1 2 3", 64).kind, ChatLineKind::kBad);
  // Numbers past their type.
  EXPECT_EQ(ParseChatLine("a: chat 4294967296 0 0", 1).kind, ChatLineKind::kBad);
  EXPECT_EQ(ParseChatLine("a: chat 0 0 9223372036854775808", 1).kind, ChatLineKind::kBad);
  EXPECT_EQ(ParseChatLine("a: chat 0 0 9223372036854775807", 1).kind, ChatLineKind::kChat);
  const ParsedChatLine p = ParseChatLine("a: chat 1 2 3", 64);
  EXPECT_EQ(std::string(p.error), "a chat line of the wrong length");
}

}  // namespace
}  // namespace troupe::load
