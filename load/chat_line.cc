#include "load/chat_line.h"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace troupe::load {
namespace {

constexpr absl::string_view kChatWord = "chat ";
constexpr absl::string_view kHelloWord = "hello ";
constexpr absl::string_view kNameEnd = ": ";

// The padding's first letter; each next one is the following letter, 'z'
// wrapping to 'a'. Two lines of one talker next to each other, or the same
// line of two talkers, start on different letters.
uint32_t FirstPadLetter(uint32_t talker, uint64_t seq) {
  return static_cast<uint32_t>((uint64_t{talker} * 7 + seq * 3) % 26);
}

// Parses the decimal number at the start of `*s` (digits only, at most
// `max`) and removes it. False when there is none or it is too large.
bool ConsumeNumber(absl::string_view* s, uint64_t max, uint64_t* value) {
  uint64_t v = 0;
  size_t i = 0;
  for (; i < s->size() && (*s)[i] >= '0' && (*s)[i] <= '9'; ++i) {
    const uint64_t digit = static_cast<uint64_t>((*s)[i] - '0');
    if (v > (max - digit) / 10) return false;
    v = v * 10 + digit;
  }
  if (i == 0) return false;
  s->remove_prefix(i);
  *value = v;
  return true;
}

bool ConsumeSpace(absl::string_view* s) {
  if (s->empty() || s->front() != ' ') return false;
  s->remove_prefix(1);
  return true;
}

ParsedChatLine Bad(const char* why) {
  ParsedChatLine p;
  p.error = why;
  return p;
}

}  // namespace

void AppendChatLine(uint32_t talker, uint64_t seq, int64_t send_ns, size_t size, std::string* out) {
  const size_t start = out->size();
  absl::StrAppend(out, kChatWord, talker, " ", seq, " ", send_ns);
  const size_t header = out->size() - start;
  // Room for a space, one letter at least, and the "\n".
  if (size >= header + 3) {
    const size_t pad = size - header - 2;
    out->push_back(' ');
    uint32_t letter = FirstPadLetter(talker, seq);
    for (size_t i = 0; i < pad; ++i) {
      out->push_back(static_cast<char>('a' + letter));
      letter = letter == 25 ? 0 : letter + 1;
    }
  }
  out->push_back('\n');
}

void AppendHelloLine(uint64_t round, std::string* out) {
  absl::StrAppend(out, kHelloWord, round, "\n");
}

ParsedChatLine ParseChatLine(absl::string_view line, size_t size) {
  const size_t name_end = line.find(kNameEnd);
  if (name_end == absl::string_view::npos || name_end == 0) {
    return Bad("no \"<name>: \" before the line");
  }
  ParsedChatLine p;
  p.name = line.substr(0, name_end);
  absl::string_view rest = line.substr(name_end + kNameEnd.size());
  const size_t payload_size = rest.size();
  if (absl::ConsumePrefix(&rest, kHelloWord)) {
    if (!ConsumeNumber(&rest, std::numeric_limits<uint64_t>::max(), &p.seq) || !rest.empty()) {
      return Bad("a malformed hello line");
    }
    p.kind = ChatLineKind::kHello;
    return p;
  }
  if (!absl::ConsumePrefix(&rest, kChatWord)) return Bad("neither a chat nor a hello line");
  uint64_t talker = 0;
  uint64_t send_ns = 0;
  if (!ConsumeNumber(&rest, std::numeric_limits<uint32_t>::max(), &talker) ||
      !ConsumeSpace(&rest) || !ConsumeNumber(&rest, std::numeric_limits<uint64_t>::max(), &p.seq) ||
      !ConsumeSpace(&rest) ||
      !ConsumeNumber(&rest, std::numeric_limits<int64_t>::max(), &send_ns)) {
    return Bad("a malformed chat header");
  }
  p.talker = static_cast<uint32_t>(talker);
  p.send_ns = static_cast<int64_t>(send_ns);
  // The length AppendChatLine gives these numbers, "\n" included.
  const size_t header = payload_size - rest.size();
  const size_t expected = size >= header + 3 ? size : header + 1;
  if (payload_size + 1 != expected) return Bad("a chat line of the wrong length");
  if (!rest.empty()) {
    if (!ConsumeSpace(&rest)) return Bad("a malformed chat header");
    uint32_t letter = FirstPadLetter(p.talker, p.seq);
    for (const char c : rest) {
      if (c != static_cast<char>('a' + letter)) return Bad("a chat line with wrong padding");
      letter = letter == 25 ? 0 : letter + 1;
    }
  }
  p.kind = ChatLineKind::kChat;
  return p;
}

}  // namespace troupe::load
