// TopConnections: the connections with the most queued output (or the
// deepest mailboxes), as the admin endpoint reports them
// (GET /admin/connections, core/ops/admin.h).
//
//   // On reactor r's own thread (a task Reactor::Post'ed there):
//   TopConnections top = TopConnectionsInLoop(r, /*n=*/10, TopBy::kOutput);
//   // Anywhere, once every reactor's part is in:
//   MergeTop(all, 10, TopBy::kOutput);
//   std::string json = RenderTopJson(all, TopBy::kOutput, 10, reactors, scanned);
//
// Cost: one walk of the reactor's connection table, O(connections · log n)
// on the reactor's thread, with no lock (the table is loop-affine); only the
// n rows kept are formatted. Callers bound n (kMaxTopConnections).
//
// Thread safety: TopConnectionsInLoop on the reactor's thread; the rest are
// pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/loop/connection_id.h"

namespace troupe {

class Reactor;

// The most rows one request may ask for: the walk is O(connections) either
// way, but the rows are formatted and held while the reactors answer.
inline constexpr size_t kMaxTopConnections = 1000;

enum class TopBy { kOutput, kMailbox };
// "output", "mailbox" -> the key.
absl::StatusOr<TopBy> ParseTopBy(std::string_view name);
const char* TopByName(TopBy by);

struct ConnectionRow {
  ConnectionId id;
  std::string peer;
  size_t pending_output = 0;  // bytes the kernel has not taken yet
  size_t mailbox_depth = 0;   // mails waiting for the handler
  const char* state = "";     // "connecting", "open", "flushing", "lingering", "closed"
  bool outbound = false;      // dialed out (Reactor::Connect)
  int64_t idle_ms = 0;        // since bytes last moved either way
};

struct TopConnections {
  std::vector<ConnectionRow> rows;  // largest first
  size_t scanned = 0;               // connections walked
};

// The `n` largest of `reactor`'s connections by `by`, largest first (ties:
// the other key, then the longest idle).
TopConnections TopConnectionsInLoop(Reactor& reactor, size_t n, TopBy by);

// Sorts `rows` (several reactors' parts), largest first, and keeps `n`.
void MergeTop(std::vector<ConnectionRow>& rows, size_t n, TopBy by);

// {"by":"output","top":10,"reactors":2,"scanned":1234,"connections":[{...},...]}
// with one object per row: reactor, id ("slot/generation"), peer,
// pending_output_bytes, mailbox_depth, state, outbound, idle_ms.
std::string RenderTopJson(const std::vector<ConnectionRow>& rows, TopBy by, size_t n,
                          size_t reactors, size_t scanned);

}  // namespace troupe
