#include "core/ops/top_connections.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/string_view_compat.h"
#include "core/loop/connection.h"
#include "core/loop/reactor.h"

namespace troupe {
namespace {

const char* StateName(Connection::State state) {
  switch (state) {
    case Connection::State::kConnecting:
      return "connecting";
    case Connection::State::kOpen:
      return "open";
    case Connection::State::kFlushing:
      return "flushing";
    case Connection::State::kLingering:
      return "lingering";
    case Connection::State::kClosed:
      return "closed";
  }
  return "unknown";
}

// What a row is ranked by, and the comparison: `a` ranks before `b`.
struct Key {
  size_t primary;
  size_t secondary;
  int64_t idle_ms;
};
bool RanksBefore(const Key& a, const Key& b) {
  if (a.primary != b.primary) return a.primary > b.primary;
  if (a.secondary != b.secondary) return a.secondary > b.secondary;
  return a.idle_ms > b.idle_ms;
}
Key KeyOf(const ConnectionRow& row, TopBy by) {
  return by == TopBy::kOutput ? Key{row.pending_output, row.mailbox_depth, row.idle_ms}
                              : Key{row.mailbox_depth, row.pending_output, row.idle_ms};
}

// JSON string contents: addresses hold no quotes or controls, but a row
// must never break the document whatever it holds.
void AppendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

}  // namespace

absl::StatusOr<TopBy> ParseTopBy(std::string_view name) {
  if (name == "output") return TopBy::kOutput;
  if (name == "mailbox") return TopBy::kMailbox;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown key '", AsAbsl(name), "' (known: output, mailbox)"));
}

const char* TopByName(TopBy by) { return by == TopBy::kOutput ? "output" : "mailbox"; }

TopConnections TopConnectionsInLoop(Reactor& reactor, size_t n, TopBy by) {
  TopConnections top;
  if (n == 0) return top;
  const auto now = std::chrono::steady_clock::now();
  // A heap of the n best so far, worst on top: each connection costs one
  // comparison, and a push/pop only when it beats the worst kept.
  struct Entry {
    Key key;
    const Connection* conn;
  };
  const auto worse_on_top = [](const Entry& a, const Entry& b) {
    return RanksBefore(a.key, b.key);
  };
  std::vector<Entry> heap;
  heap.reserve(n);
  reactor.ForEachConnectionInLoop([&](const Connection& conn) {
    ++top.scanned;
    const int64_t idle_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - conn.last_active()).count();
    const size_t output = conn.pending_output();
    const size_t mail = conn.mailbox_depth();
    const Key key = by == TopBy::kOutput ? Key{output, mail, idle_ms} : Key{mail, output, idle_ms};
    if (heap.size() < n) {
      heap.push_back({key, &conn});
      std::push_heap(heap.begin(), heap.end(), worse_on_top);
    } else if (RanksBefore(key, heap.front().key)) {
      std::pop_heap(heap.begin(), heap.end(), worse_on_top);
      heap.back() = {key, &conn};
      std::push_heap(heap.begin(), heap.end(), worse_on_top);
    }
  });
  std::sort_heap(heap.begin(), heap.end(), worse_on_top);  // best first
  top.rows.reserve(heap.size());
  for (const Entry& e : heap) {
    ConnectionRow row;
    row.id = e.conn->id();
    row.peer = e.conn->peer().ToString();
    row.pending_output = e.conn->pending_output();
    row.mailbox_depth = e.conn->mailbox_depth();
    row.state = StateName(e.conn->state());
    row.outbound = e.conn->outbound();
    row.idle_ms = std::max<int64_t>(e.key.idle_ms, 0);
    top.rows.push_back(std::move(row));
  }
  return top;
}

void MergeTop(std::vector<ConnectionRow>& rows, size_t n, TopBy by) {
  std::stable_sort(rows.begin(), rows.end(), [by](const ConnectionRow& a, const ConnectionRow& b) {
    return RanksBefore(KeyOf(a, by), KeyOf(b, by));
  });
  if (rows.size() > n) rows.resize(n);
}

std::string RenderTopJson(const std::vector<ConnectionRow>& rows, TopBy by, size_t n,
                          size_t reactors, size_t scanned) {
  std::string out =
      absl::StrCat("{\"by\":\"", TopByName(by), "\",\"top\":", n, ",\"reactors\":", reactors,
                   ",\"scanned\":", scanned, ",\"connections\":[");
  for (size_t i = 0; i < rows.size(); ++i) {
    const ConnectionRow& row = rows[i];
    absl::StrAppend(&out, i == 0 ? "\n" : ",\n", "{\"reactor\":", row.id.reactor, ",\"id\":\"",
                    row.id.slot, "/", row.id.generation, "\",\"peer\":");
    AppendJsonString(out, row.peer);
    absl::StrAppend(&out, ",\"pending_output_bytes\":", row.pending_output,
                    ",\"mailbox_depth\":", row.mailbox_depth, ",\"state\":\"", row.state,
                    "\",\"outbound\":", row.outbound ? "true" : "false",
                    ",\"idle_ms\":", row.idle_ms, "}");
  }
  out.append(rows.empty() ? "]}\n" : "\n]}\n");
  return out;
}

}  // namespace troupe
