// The lines of echo-load --chat (load/chat.h): what a talker sends into the
// room, what a member gets back, and the check of each.
//
//   std::string out;
//   AppendChatLine(/*talker=*/3, /*seq=*/41, /*send_ns=*/now, /*size=*/64, &out);
//   // out: "chat 3 41 1234567890 ghij...\n", 64 bytes with the "\n".
//   ...
//   ParsedChatLine p = ParseChatLine("127.0.0.1:40000: chat 3 41 1234567890 ghij...", 64);
//   // p.kind == ChatLineKind::kChat, p.name == "127.0.0.1:40000", p.talker == 3, ...
//
// A talker's line, newline included, is `size` bytes:
//
//   chat <talker> <seq> <send_ns> <padding>\n
//   |---------- header ----------|
//
// all numbers in decimal, send_ns on the load's monotonic clock
// (load/schedule.h). The padding is letters that depend on talker, seq and
// position, so a byte the server changes, drops or adds anywhere in the line
// is caught; a `size` smaller than the header's gets the header alone (its
// trailing space dropped). The join probe is "hello <round>\n".
//
// The server hands each line to every other member as "<name>: <line>",
// <name> being the sender's address as the server sees it; ParseChatLine
// takes that, without its "\n".
//
// Thread safety: thread-safe (pure functions).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace troupe::load {

enum class ChatLineKind : uint8_t { kChat, kHello, kBad };

struct ParsedChatLine {
  ChatLineKind kind = ChatLineKind::kBad;
  absl::string_view name;  // Points into the parsed line.
  uint32_t talker = 0;     // kChat.
  uint64_t seq = 0;        // kChat: the line's number; kHello: the round.
  int64_t send_ns = 0;     // kChat.
  const char* error = "";  // kBad: what is wrong, for the error message.
};

// Appends talker `talker`'s line `seq`, stamped `send_ns`, `size` bytes
// with its "\n" (longer when the header needs more).
void AppendChatLine(uint32_t talker, uint64_t seq, int64_t send_ns, size_t size, std::string* out);
// Appends the join probe of round `round`.
void AppendHelloLine(uint64_t round, std::string* out);

// Parses and checks one received line (without its "\n"): a chat line must
// be exactly what AppendChatLine makes for its numbers and `size`.
ParsedChatLine ParseChatLine(absl::string_view line, size_t size);

}  // namespace troupe::load
