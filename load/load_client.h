// The echo load engine behind `echo-load`: opens many TCP connections to an
// echo server, keeps `pipeline` messages in flight on each (closed loop) or
// sends on a fixed schedule (open loop, `rate`), and verifies every echoed
// byte against the stream it sent.
//
//   LoadOptions options;
//   options.target = *Address::Parse("127.0.0.1:7007");
//   options.connections = 1000;
//   options.duration = absl::Seconds(10);
//   options.progress_interval = absl::Seconds(1);
//   options.on_progress = [](const LoadProgress& p) {
//     std::cerr << FormatProgressLine(p) << "\n";  // load/report.h
//   };
//   absl::StatusOr<LoadReport> report = RunLoad(options);
//   if (!report.ok()) { /* "no connection to 127.0.0.1:7007 ...: Connection
//     refused" */ }
//   std::cout << FormatReportText(*report);  // load/report.h
//   return report->ok() ? 0 : 1;
//
// The formatters are in load/report.h (text, JSON, CSV, the progress line)
// and load/hdr_output.h (--histogram-out). The engine behind RunLoad, one
// concern a file: pattern.h (each connection's byte stream and the echo
// check), session.h (one connection's state machine), worker.h (a thread's
// epoll loop), schedule.h (phase times, the open-loop schedule), tally.h (a
// thread's counts), progress.h (the snapshots), source_addresses.h.
//
// How it runs:
//   1. connect: `threads` threads, each with its own epoll loop, open their
//      share of the connections (non-blocking, TCP_NODELAY), at most 1,024
//      handshakes outstanding at a time across all threads (kConnectWindow
//      in load_client.cc), bounded by `connect_timeout`. Failures are counted,
//      with the first error's text.
//   2. warmup: traffic as below, not measured.
//   3. measure: for `duration`; a message counts when it completes inside this
//      window, and its latency is completion time - issue time (closed loop)
//      or completion time - intended send time (open loop).
//   4. drain: no new messages; each connection is closed as soon as all it
//      sent has come back. The drain waits kDrainTimeout (1 s, worker.cc) or
//      `stall_timeout`, whichever is longer; a connection whose echoes are
//      not all back by then is `incomplete` (an error), as is one the peer
//      closes with echoes still owed.
// Throughout phases 2 and 3 (and script mode), a connection that owes echoes
// (bytes sent and not yet back, or bytes waiting to be sent) and receives
// nothing for `stall_timeout` is `stalled` (an error) and is closed.
// With `reconnect`, a connection the server closes during phases 2 and 3 is
// opened again (see LoadOptions::reconnect), so a run survives servers that
// are drained and restarted one at a time behind a load balancer.
// With `messages` (script mode) there is no warmup and no duration: each
// connection sends the listed messages in order, each once, waits for their
// echoes and closes; the run ends when every connection has finished, or at
// `script_timeout`.
//
// The stream: connection i sends a deterministic pseudo-random byte stream
// that starts at its own offset into a shared table with a prime period, so
// a server that mixes up two connections' bytes, drops, duplicates or
// reorders them is caught. Any server that echoes bytes back works: the
// client assumes no framing, unless `framing` asks for one (each message one
// line or one length-prefixed frame, for a server that echoes messages; the
// check stays byte-exact, frames included). In script mode the stream is the
// concatenation of the messages.
//
// With `churn` there is no connect phase and no connection lives long: each
// of `connections` slots connects, sends one message, verifies its echo and
// closes, again and again through the warmup and the measured window; a
// cycle is a message, so messages per second are connections per second
// (load/churn.h).
//
// Errors (each fails LoadReport::ok()); a connection counts for one kind at
// most, since each closes it (with `reconnect`: one per stream, the
// connection's life between two connects):
//   - connect failures;
//   - verification mismatches (a wrong or extra echoed byte);
//   - lost: the peer closed (with `reconnect`: reset) the connection before
//     the drain;
//   - stalled: no byte received for `stall_timeout` while echoes were owed,
//     so a server that drops bytes or stops reading is caught during the run;
//   - incomplete: echoes still owed when the drain ends, or when the peer
//     closes during it (the error names the bytes echoed and sent);
//   - timed out (script mode): not finished at `script_timeout`; such a
//     connection is not also incomplete;
//   - no messages: the measured window (in script mode, the whole script)
//     completed no message at all, so the run measured nothing. One error for
//     the run, not per connection;
//   - down (`reconnect` only): a connection that was not open again by the
//     end of the drain, its reconnects having failed;
//   - churn connect failures (`churn` only): a cycle's connect refused,
//     without a free source port, or not done within `connect_timeout`. In
//     churn mode every kind counts per cycle, and the slot carries on.
//
// Thread safety: RunLoad is thread-safe (it shares nothing but a read-only
// table between calls); the structs are plain values. `on_progress` runs on
// the thread that called RunLoad.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/net/address.h"
#include "load/client_cpu.h"
#include "load/framing.h"
#include "load/histogram.h"

namespace troupe {

// A snapshot of a run in progress, handed to LoadOptions::on_progress.
struct LoadProgress {
  enum class Phase { kConnecting, kWarmup, kMeasuring, kScript, kDraining };
  Phase phase = Phase::kConnecting;
  // Time into the phase and its planned length (the connect timeout, the
  // warmup, the duration, or the script timeout); zero while draining.
  absl::Duration elapsed;
  absl::Duration total;
  int connections_requested = 0;
  int connections_established = 0;
  // The interval since the previous snapshot (the first one starts when the
  // traffic does), and what completed in it, warmup included.
  absl::Duration interval;
  uint64_t interval_messages = 0;
  // p99 latency of the messages completed in the interval; 0 when none.
  uint64_t interval_p99_ns = 0;
  // Since the traffic started (warmup included), for script mode's count.
  uint64_t messages_completed = 0;
  // Script mode: connections x messages; 0 otherwise.
  uint64_t messages_planned = 0;
  // Errors so far, of every kind LoadReport counts but no_messages and
  // connections_down (which only the end of the run decides).
  uint64_t errors = 0;
  // LoadOptions::reconnect: whether the line shows the two below.
  bool reconnect = false;
  // Connections opened again so far, and connections waiting to be (in
  // their backoff or handshake) now.
  uint64_t reconnections = 0;
  uint64_t reconnecting = 0;
  // LoadOptions::churn: a message is a connection's cycle, so the line
  // names the rate connections per second.
  bool churn = false;

  double IntervalMessagesPerSecond() const;
};

struct LoadOptions {
  Address target;
  int connections = 100;
  // 0: min(connections, online CPUs).
  int threads = 0;
  size_t message_size = 64;
  // Messages kept in flight per connection.
  int pipeline = 1;
  absl::Duration duration = absl::Seconds(10);
  absl::Duration warmup = absl::ZeroDuration();
  absl::Duration connect_timeout = absl::Seconds(5);

  // Open loop: messages per second across all connections, scheduled evenly
  // over them (connection i of a thread with n connections sends that
  // thread's messages i, i + n, ...). A message's latency runs from when it
  // was due to be sent, so a server that stalls the client is charged for
  // the wait (no coordinated omission). `pipeline` still bounds the messages
  // in flight per connection: a message due while its connection's window is
  // full goes out when the window opens, and its latency still counts from
  // its due time. Each message's latency from its actual send (the send()
  // of its first byte) is kept too, in latency_actual_ns. 0: closed loop.
  double rate = 0;

  // Script mode when non-empty: each connection sends these in order (each
  // must be non-empty), waits for their echoes and closes. `message_size`,
  // `duration`, `warmup` and `rate` are then unused.
  std::vector<std::string> messages;
  // Script mode: connections not finished by then count as errors.
  absl::Duration script_timeout = absl::Seconds(30);

  // How each message is framed (load/framing.h): raw bytes, or one line or
  // one length-prefixed frame per message, for a server that echoes
  // messages rather than bytes (echo-cluster --codec lines or length). The
  // echo check stays byte-exact over the whole stream, frames included.
  // `message_size` counts the whole frame ("\n" or prefix included): at
  // least MinFramedMessageSize(framing), at most kMaxFramedMessageSize when
  // framed. Not with `messages` (a script's messages are sent as given).
  LoadFraming framing = LoadFraming::kRaw;

  // Churn mode: each of the `connections` slots runs cycles of connect, send
  // one message, verify its echo, close, as fast as it can, through the
  // warmup and the duration (load/churn.h). A completed cycle counts as a
  // message: its latency runs from the start of the connect to the verified
  // echo, and it completes once the close has (so a cycle whose close fails
  // is an error, not a completion). A connect that fails (refused, no free
  // source port, no handshake within `connect_timeout`) counts in
  // churn_connect_failures, an error; a reset, wrong bytes or a stall
  // (`stall_timeout`, also while waiting for the server's close) count as
  // without churn; either way the slot goes on with its next cycle. At the
  // end, cycles in flight get the drain to finish; one that does not is
  // incomplete. Not with `messages`, `rate`, `reconnect` or `tls`, nor with
  // `pipeline` above 1 (one message per connection).
  bool churn = false;
  // How a churn cycle closes once its echo is verified; see docs/echo-load.md
  // for why (TIME_WAIT and source ports):
  //   kFin    shutdown(SHUT_WR), then wait for the server's FIN (a byte
  //           instead is a verification error, a reset is lost), then close:
  //           an orderly close whose TIME_WAIT stays with the client, the
  //           side that closed first;
  //   kReset  SO_LINGER 0 and close: a reset (the server reads ECONNRESET),
  //           no TIME_WAIT on either side.
  enum class ChurnClose : uint8_t { kFin, kReset };
  ChurnClose churn_close = ChurnClose::kFin;

  // A connection that owes echoes and receives no byte for this long is
  // `stalled` (an error) and closed; checked every stall_timeout / 4 or so,
  // so one is caught within about 1.25 x this. An idle connection (open
  // loop, nothing due) owes nothing and is never stalled. The drain at the
  // end waits this long for echoes still in flight, 1 s at least. Zero or
  // absl::InfiniteDuration(): no stall check, and the drain waits 1 s. Must
  // not be negative.
  absl::Duration stall_timeout = absl::Seconds(2);

  // Connections bind source addresses 127.0.0.1 .. 127.0.0.N round robin, so
  // that more connections than one source's ephemeral ports can reach one
  // loopback target. 0: automatic (1 unless the connections exceed 80% of
  // the ports in /proc/sys/net/ipv4/ip_local_port_range; with `churn`, 8 at
  // least, for the TIME_WAITs its closes leave: load/source_addresses.cc); 1:
  // no explicit bind at all (the kernel picks, as before). More than 1 needs
  // an IPv4 127.x target.
  int source_addresses = 0;

  // Keep going when the server closes connections (nodes drained and
  // restarted one at a time behind a load balancer). During the warmup and
  // the measured window, a connection the server ends is opened again (same
  // target, same source address, TCP_NODELAY) after a backoff, and starts a
  // fresh stream: its offsets, messages and echo check restart at 0, while
  // its byte pattern (its connection number) stays distinct from the other
  // connections'. What the old stream got back was verified byte by byte, as
  // always; what it had sent and not got back is counted, not checked:
  // `unanswered_bytes`, and `abandoned_messages` (in flight then, latency
  // never recorded). By how the stream ended:
  //   - a clean close (recv() returned 0: the server's FIN, after every byte
  //     it echoed): no error. That holds in the final drain too, where the
  //     connection is not opened again (it has nothing more to send), so a
  //     restart overlapping the end of a run does not fail it by chance;
  //   - a reset or a recv()/send() error: `lost` (an error), then reconnects
  //     (in the drain: `incomplete` when echoes were owed, as without);
  //   - stalled: an error, then reconnects (a hung node costs only its own
  //     connections);
  //   - a verification mismatch: an error, and the connection stays closed:
  //     the server is broken, and one report per connection is enough.
  // What a clean close cannot show: over a raw echo, a drain that stopped
  // reading (and discarded what it had not read) looks exactly like a server
  // that read bytes and dropped them before its FIN; both end in unanswered
  // bytes, nothing else. A server that drops bytes and then echoes later
  // ones is still caught at the first byte out of place, and one that drops
  // them and keeps the connection open is still stalled.
  // A reconnect that fails (refused, or no handshake within
  // `connect_timeout`) counts in `reconnect_failures`, not as an error, and
  // is retried: the backoff starts at 10 ms and doubles to 1 s (each delay
  // drawn from its upper half, so that a node's connections do not all come
  // back in one burst), and starts over once a new stream gets an echo. A
  // connection waiting to reconnect owes nothing, so it is never stalled.
  // The drain gives every connection still down one more attempt at once,
  // then retries on its backoff until the drain's deadline, and closes the
  // ones that connect; one still not open then is `connections_down`, an
  // error. Open loop: the schedule goes on across a reconnect; messages that
  // fell due while the connection was down are sent on the new one, their
  // latency counted from their due time, so an outage shows in the latency
  // as a stall would. The connect phase is unchanged: a connection that
  // cannot be established at first is a connect error, and is not retried.
  // Not with `messages` (script mode): a script is sent once.
  bool reconnect = false;

  // TLS: each connection runs a TLS handshake (1.2 at least) after its TCP
  // one, both within connect_timeout, then sends and verifies its stream
  // through it; a failed handshake is a connect failure, with OpenSSL's
  // reason (a certificate that does not verify says why). The server's
  // certificate is verified against the PEM CAs in tls_ca_file, and its
  // name against tls_server_name (else the target's host; an IP literal is
  // checked as an address), unless tls_insecure, which verifies nothing.
  // Exactly one of tls_ca_file and tls_insecure. Closing sends close_notify;
  // the server's close_notify is a clean close, a TCP EOF without one is not.
  bool tls = false;
  std::string tls_ca_file;
  std::string tls_server_name;
  bool tls_insecure = false;

  // How often on_progress is called; zero: never.
  absl::Duration progress_interval = absl::ZeroDuration();
  std::function<void(const LoadProgress&)> on_progress;
};

// What a run counts, summed over connections and threads: each worker thread
// keeps one for its connections, and RunLoad adds them up into the report.
struct LoadTally {
  int connections_established = 0;
  int connections_failed = 0;

  uint64_t messages = 0;
  // Echoed payload bytes that came back in the window (one direction: the
  // bytes sent are the same again).
  uint64_t bytes = 0;
  // Message latencies in nanoseconds.
  LatencyHistogram latency_ns;
  // The same values as counts per LatencyHistogram bucket (BucketCount()
  // entries, or empty in a hand-made report), for the percentile
  // distribution (FormatPercentileDistribution).
  std::vector<uint64_t> latency_buckets;
  // Open loop: the same messages' latencies from their actual send, read
  // just before the send() that handed the kernel a message's first byte
  // (as wrk2 stamps before its write), so never above latency_ns. Empty in
  // the closed loop, where a message is sent when it is issued: there
  // latency_ns is both (LoadReport::actual_latency()).
  LatencyHistogram latency_actual_ns;

  uint64_t verification_errors = 0;
  uint64_t connections_lost = 0;
  // Script mode: connections still waiting for echoes at the timeout.
  uint64_t connections_timed_out = 0;
  // Connections whose echoes were not all back at the end of the drain (or
  // when the peer closed during it).
  uint64_t connections_incomplete = 0;
  // Connections that owed echoes and received nothing for the stall timeout.
  uint64_t connections_stalled = 0;

  // LoadOptions::reconnect. Connections opened again after the server closed
  // them (not errors), and connect attempts that failed on the way (not
  // errors either: retried).
  uint64_t reconnections = 0;
  uint64_t reconnect_failures = 0;
  // Over the streams the server ended (see LoadOptions::reconnect): bytes
  // sent that never came back, and messages in flight then, whose latency
  // is not recorded. A stream reset in the drain is `incomplete` instead,
  // and its error names its bytes.
  uint64_t unanswered_bytes = 0;
  uint64_t abandoned_messages = 0;
  // Connections not open again by the end of the drain: an error.
  uint64_t connections_down = 0;

  // LoadOptions::churn: connects that succeeded, and connects that failed
  // (an error kind). Each cycle connects once.
  uint64_t churn_connects = 0;
  uint64_t churn_connect_failures = 0;

  // Adds every count of `other` to this one.
  void Add(const LoadTally& other);
};

// The result of a run: its setup, what it counted (LoadTally, whose fields
// are the report's), and what only the whole run can tell.
struct LoadReport : LoadTally {
  // The first few error messages are kept; the counts cover all of them.
  static constexpr size_t kMaxErrorMessages = 5;

  std::string target;
  int threads = 0;
  size_t message_size = 0;  // 0 in script mode.
  int pipeline = 0;
  double rate = 0;  // Open-loop target rate; 0: closed loop.
  int source_addresses = 1;
  bool reconnect = false;  // LoadOptions::reconnect.
  LoadFraming framing = LoadFraming::kRaw;
  bool churn = false;  // LoadOptions::churn: a message is a connection's cycle.
  LoadOptions::ChurnClose churn_close = LoadOptions::ChurnClose::kFin;
  // Script mode: the messages each connection sends, and their total size.
  size_t script_messages = 0;
  size_t script_bytes = 0;

  int connections_requested = 0;

  absl::Duration warmup;
  // Wall time of the measured window as the threads actually ran it.
  absl::Duration measured;

  // No message completed in the measured window (script mode: at all). Set by
  // RunLoad; counts as one error.
  bool no_messages = false;
  std::vector<std::string> first_errors;

  // The client's own load over the measured window (load/client_cpu.h):
  // each worker thread's CPU, the open loop's send lag, and whether either
  // says the client, not the server, may have been the limit.
  ClientLoad client;

  // Latency from the actual send: latency_actual_ns in the open loop,
  // latency_ns otherwise.
  const LatencyHistogram& actual_latency() const {
    return rate > 0 ? latency_actual_ns : latency_ns;
  }

  double MessagesPerSecond() const;
  double MebibytesPerSecond() const;
  uint64_t error_count() const {
    return static_cast<uint64_t>(connections_failed) + verification_errors + connections_lost +
           connections_timed_out + connections_incomplete + connections_stalled + connections_down +
           churn_connect_failures + (no_messages ? 1 : 0);
  }
  bool ok() const { return error_count() == 0; }
};

// Checks `options` without touching the network.
absl::Status ValidateLoadOptions(const LoadOptions& options);

// Runs the whole load (connect, warmup, measure, drain) and blocks until it
// is over: about connect time + warmup + duration. Returns an error when the
// options are invalid or when no connection at all could be established;
// every other failure is counted in the report.
absl::StatusOr<LoadReport> RunLoad(const LoadOptions& options);

}  // namespace troupe
