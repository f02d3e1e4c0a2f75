// echo-load --chat: a fan-out benchmark for a chat room server (the
// protocol of echo-cluster --mode chat, actors/builtin.h ChatActor): every
// connection is a member of one room, a line a member sends goes to every
// other member as "<sender's address>: <line>\n". A few members talk; all
// of them check every line they get and time its delivery.
//
//   ChatOptions options;
//   options.target = *Address::Parse("127.0.0.1:7007");
//   options.members = 200;
//   options.talkers = 10;
//   options.duration = absl::Seconds(10);
//   absl::StatusOr<ChatReport> report = RunChat(options);
//   if (!report.ok()) { /* nothing ran: a member could not connect, or the
//     room never held them all */ }
//   std::cout << FormatChatReportText(*report);  // load/chat_report.h
//   return report->ok() ? 0 : 1;
//
// How it runs:
//   1. connect: `threads` threads, each with its own epoll loop, open their
//      contiguous share of the members (non-blocking, TCP_NODELAY), within
//      `connect_timeout`. All must connect, or the run fails.
//   2. join: a connected member is not yet in the room (the server joins it
//      when it gets round to the connection). Member 0 sends "hello <k>"
//      lines, k = 0, 1, ..., 1 ms apart, doubling to 100 ms; a member that
//      gets any hello is in the room for good (a server does not drop a
//      member it delivered to, and delivers in order), and member 0 itself
//      is in it before its first line is handled. Once every other member
//      has had a hello, the room is complete; not within `connect_timeout`
//      of the join's start, and the run fails. A hello still on its way when
//      the traffic starts is skipped wherever it lands.
//   3. warmup, then measure for `duration`: `talkers` members (member
//      i * members / talkers for talker i, so they are spread over the
//      threads) send lines (load/chat_line.h: talker, sequence number and
//      send time, padded to `line_size`). A line is in flight until every
//      other member has it; each talker keeps at most `pipeline` in flight
//      (load/chat_room.h). Closed loop: a talker sends as soon as its window
//      allows, stamping the send time. Open loop (`rate` > 0): `rate` lines
//      per second in all, spread evenly over the talkers, each stamped with
//      its due time however late its window lets it out (no coordinated
//      omission).
//   4. drain: talkers stop; each thread waits until its members have every
//      line sent, at most max(1 s, stall_timeout). A line a member still
//      lacks then is lost.
//
// What every member checks, per talker: line numbers come in order, each
// once. A number past the next expected one: the lines skipped are lost
// (and in flow control count as received, so the talker goes on). A number
// below: a line that was counted lost and now comes late is reordered
// (no longer lost), any other is a duplicate. A line that does not parse,
// whose padding or length is wrong, that names a talker that does not exist
// or a line not yet sent, a member's own line, or a talker's line under a
// name other than the one its first line came under: corrupt. A member the
// server closes: closed. A talker with lines in flight and no progress for
// `stall_timeout`: stalled, and it stops talking. The checks cost the same
// whether the run is measured or not.
//
// Figures: a delivery is a member getting another member's line, in order
// and for the first time. Deliveries and their latency (receive time - the
// line's stamp) count when received inside the measured window; lines sent
// count when stamped inside it. Over the whole run a clean server delivers
// exactly lines_sent x (members - 1).
//
// Thread safety: RunChat is thread-safe; the structs are plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/net/address.h"
#include "load/histogram.h"

namespace troupe {

struct ChatOptions {
  Address target;
  int members = 100;
  int talkers = 10;  // 1 .. members.
  // 0: min(members, online CPUs).
  int threads = 0;
  // A talker's line, "\n" included (longer when its header needs more).
  size_t line_size = 64;
  // Lines in flight per talker: sent, not yet with every other member.
  int pipeline = 1;
  // Open loop: lines per second in all; 0: closed loop.
  double rate = 0;
  absl::Duration duration = absl::Seconds(10);
  absl::Duration warmup = absl::ZeroDuration();
  // Bounds the connect, and separately the join.
  absl::Duration connect_timeout = absl::Seconds(5);
  // A talker with lines in flight that none advances for this long is
  // stalled; the drain waits this long, 1 s at least. Zero or infinite: no
  // stall check, and the drain waits 1 s.
  absl::Duration stall_timeout = absl::Seconds(2);
  // As LoadOptions::source_addresses (load/load_client.h).
  int source_addresses = 0;
};

// What a run counts, summed over the threads.
struct ChatCounts {
  // Lines the talkers sent: all, and those stamped in the measured window.
  uint64_t lines_sent = 0;
  uint64_t lines_measured = 0;
  // Lines members got in order and for the first time: all (warmup and
  // drain included), and those received in the measured window.
  uint64_t deliveries = 0;
  uint64_t deliveries_measured = 0;
  // Latencies of the measured deliveries, in nanoseconds, and the same as
  // counts per LatencyHistogram bucket (for --histogram-out).
  LatencyHistogram latency_ns;
  std::vector<uint64_t> latency_buckets;

  // Errors, each a line (or a member, or a talker) as named.
  uint64_t lost = 0;        // Lines a member skipped or never got.
  uint64_t duplicates = 0;  // Lines a member got again.
  uint64_t reordered = 0;   // Lines a member got after a later one.
  uint64_t corrupt = 0;     // Lines that failed the checks above.
  uint64_t closed = 0;      // Members the server closed (or reset).
  uint64_t stalled = 0;     // Talkers that stopped on a stall.

  void Add(const ChatCounts& other);
};

struct ChatReport : ChatCounts {
  static constexpr size_t kMaxErrorMessages = 5;

  std::string target;
  int threads = 0;
  int members = 0;
  int talkers = 0;
  size_t line_size = 0;
  int pipeline = 0;
  double rate = 0;
  int source_addresses = 1;
  absl::Duration warmup;
  absl::Duration measured;  // As the threads ran it.
  // lines_sent x (members - 1): what a clean server delivers.
  uint64_t expected_deliveries = 0;
  // Nothing was delivered in the measured window: one error.
  bool no_deliveries = false;
  std::vector<std::string> first_errors;

  double DeliveriesPerSecond() const;
  double LinesPerSecond() const;
  uint64_t error_count() const {
    return lost + duplicates + reordered + corrupt + closed + stalled + (no_deliveries ? 1 : 0);
  }
  bool ok() const { return error_count() == 0; }
};

// Checks `options` without touching the network.
absl::Status ValidateChatOptions(const ChatOptions& options);

// Runs the whole chat load and blocks until it is over. An error when the
// options are invalid, a member could not connect, or the room did not
// complete; every later failure is counted in the report.
absl::StatusOr<ChatReport> RunChat(const ChatOptions& options);

}  // namespace troupe
