// One client connection of the load and its state machine: connect, issue
// messages (closed loop: as echoes make room; open loop: as they fall due),
// send, read and verify the echoes, and close, counting whatever goes wrong
// in the worker's tally. Its worker owns it, polls its socket and hands it
// every event.
//
//   Session& s = sessions[i];
//   s.Init(first_index + i, stream.SeedFor(first_index + i), i,
//          &issue_times[i * pipeline]);
//   s.StartConnect(context, target, source, epoll_fd);
//   ...
//   s.HandleEvent(context, events, MonotonicNanos());
//
// With LoadOptions::reconnect, a stream the server ends (see there for the
// rule) takes the session from kOpen to kBackoff, and its worker then calls
// StartConnect again when reconnect_at() comes, FinishReconnect on the
// handshake's event, or FailReconnect when it takes too long:
//
//   kOpen --server closed it--> kBackoff --StartConnect--> kConnecting
//     ^                           ^                          |
//     +------FinishReconnect------|--------------------------+
//                                 +-----failed, FailReconnect+
//
// The stream offsets it keeps, with message k occupying stream bytes
// [EndOf(k), EndOf(k + 1)) (see load/pattern.h):
//
//   0        received          sent           EndOf(issued)
//   |--------|------------------|--------------|
//    echoed   in flight          issued, not yet accepted by the kernel
//    verified (sent, not back)
//
// Thread safety: thread-compatible; a session and its SessionContext belong
// to one worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/base/fd.h"
#include "core/net/address.h"
#include "load/pattern.h"
#include "load/schedule.h"
#include "load/tally.h"
#include "load/tls_client.h"

namespace troupe::load {

// Bytes per recv(): large, so that a busy connection's echoes come back in
// few syscalls (the default loopback receive buffer holds a few of these).
inline constexpr size_t kReadChunk = kStreamChunk;

// What the sessions of one worker share: the run's constants, the phase, and
// where they count. The worker owns it and passes it to every call.
struct SessionContext {
  const Stream& stream;
  const uint64_t pipeline;
  const OpenLoopSchedule& open_loop;  // Inactive: closed loop.
  WorkerTally& tally;
  // LoadOptions::reconnect, and how long a reconnect's handshake may take.
  const bool reconnect = false;
  const int64_t connect_timeout_ns = 0;
  // LoadOptions::tls: makes each connection's SSL; null: plaintext.
  const TlsClient* const tls = nullptr;
  int64_t measure_start_ns = 0;
  // No new messages; each session closes once all it sent is back.
  bool draining = false;
  int open = 0;  // Sessions in SessionState::kOpen.
  // The `local` numbers of the sessions waiting to reconnect (kBackoff, or
  // kConnecting again), each once: a session adds itself when its stream
  // ends, and the worker drops it once it is open or closed for good.
  std::vector<size_t> reconnecting{};
  // Scratch for recv(), kReadChunk bytes, shared by the sessions.
  std::unique_ptr<uint8_t[]> read_buffer{new uint8_t[kReadChunk]};
};

// kBackoff: LoadOptions::reconnect only, waiting to connect again.
enum class SessionState : uint8_t { kIdle, kConnecting, kOpen, kBackoff, kClosed };

class Session {
 public:
  // `index`: the connection's number in the run, for its error messages;
  // `seed`: where its stream starts (Stream::SeedFor(index)); `local`: its
  // place in its worker (epoll data and open loop slot); `issue_times`: a
  // ring of `pipeline` entries.
  void Init(int index, uint64_t seed, size_t local, int64_t* issue_times);
  // Open loop: a ring of `pipeline` entries for when each message's first
  // byte went to the kernel (LoadTally::latency_actual_ns). Unset: not kept.
  void set_send_times(int64_t* send_times) { send_times_ = send_times; }

  SessionState state() const { return state_; }
  int index() const { return index_; }
  // All it sent has come back.
  bool AllEchoed() const { return received_ == sent_; }
  // kBackoff: when to try to connect again; kConnecting again: when to give
  // that handshake up.
  int64_t reconnect_at() const { return reconnect_at_ns_; }

  // Starts a non-blocking handshake and adds the socket to `epoll_fd`,
  // edge-triggered, with its `local` number as data. False when it failed
  // at once (counted).
  bool StartConnect(SessionContext& context, const Address& target, const Address* source,
                    int epoll_fd);
  // The same for a reconnect (state kBackoff): a failure backs off again,
  // and the handshake must finish by reconnect_at(), `connect_timeout_ns`
  // from `now`.
  void StartReconnect(SessionContext& context, const Address& target, const Address* source,
                      int epoll_fd, int64_t now);
  // Handles an event during the handshake. False while it is still under
  // way; true once it has ended, opened or failed (counted either way).
  bool FinishConnect(SessionContext& context, const Address& target, uint32_t events);
  void FailConnect(SessionContext& context, absl::string_view why);
  // The same for a reconnect's handshake (state kConnecting after kBackoff):
  // once open, the session starts a fresh stream at once (or, draining,
  // closes: it owes nothing).
  void FinishReconnect(SessionContext& context, const Address& target, uint32_t events,
                       int64_t now);
  // A reconnect attempt failed: counted (not an error), and the session
  // backs off again.
  void FailReconnect(SessionContext& context, absl::string_view why, int64_t now);
  // Ends the backoff now: the drain gives each connection that is down one
  // more attempt at once.
  void ReconnectNow(int64_t now);
  // Stops waiting to reconnect (state kBackoff or kConnecting again) and
  // closes; `down`: counts it as connections_down, an error.
  void GiveUpReconnecting(SessionContext& context, bool down);
  // Whether it waits to reconnect (kBackoff, or kConnecting again). The
  // worker calls Unlist() as it drops the session from
  // SessionContext::reconnecting, once it is open again or closed: the
  // session adds itself there only when not listed already, since it may
  // open and end a stream again before the worker gets to it.
  bool Reconnecting() const {
    return state_ == SessionState::kBackoff || state_ == SessionState::kConnecting;
  }
  void Unlist() { listed_ = false; }

  // Reads, verifies, completes, issues and sends as the event allows.
  void HandleEvent(SessionContext& context, uint32_t events, int64_t now);
  // Issues the messages it may: up to `pipeline` in flight, and in the open
  // loop only those due by `now`, stamped with their due time. True when it
  // issued any.
  bool Issue(SessionContext& context, int64_t now);
  // Sends what is issued, until the kernel takes no more.
  void Flush(SessionContext& context);

  // Closes it as stalled when it owes echoes and has received nothing for
  // `stall_ns` (`stall_timeout` names that in the message).
  void CheckStall(SessionContext& context, int64_t now, int64_t stall_ns,
                  absl::Duration stall_timeout);
  // Script mode: counts it as timed out and closes it.
  void TimeOut(SessionContext& context);
  // Counts it as incomplete (echoes owed at the end) and closes it; `why` is
  // appended to the message when not empty.
  void Incomplete(SessionContext& context, absl::string_view why);
  void Close(SessionContext& context);

 private:
  // Whether it waits for echoes: bytes sent and not back, or issued and not
  // yet accepted by the kernel.
  bool Owes(const SessionContext& context) const {
    return context.stream.EndOf(issued_) > received_;
  }
  enum class Handshake : uint8_t { kPending, kOpen, kFailed };
  // Advances the handshake on an event: TCP, then (LoadOptions::tls) TLS.
  // kFailed sets `error`.
  Handshake AdvanceHandshake(SessionContext& context, const Address& target, uint32_t events,
                             std::string* error);
  // Frees the SSL, if any, then closes the socket (no close_notify).
  void ResetSocket();
  // The TLS halves of ReadAndVerify and Flush.
  bool ReadTlsAndVerify(SessionContext& context, int64_t now);
  void FlushTls(SessionContext& context);
  // Verifies and counts `n` bytes received. False when that closed it.
  bool Received(SessionContext& context, const uint8_t* data, size_t n, int64_t now);
  // Opens the socket, starts the handshake and adds it to `epoll_fd`;
  // returns why not when that fails at once.
  std::optional<std::string> OpenSocket(const Address& target, const Address* source, int epoll_fd);
  // Reads until the socket is drained. False when it was closed.
  bool ReadAndVerify(SessionContext& context, uint32_t events, int64_t now);
  void CompleteMessages(SessionContext& context, int64_t now);
  // With send_times_, around each send() of the stream up to `end`: the
  // clock before it when a message may start in it (else 0), then the
  // stamp, with that time, of the messages whose first byte it took.
  int64_t SendClock(const SessionContext& context, uint64_t end) const;
  void StampSends(SessionContext& context, int64_t send_at);
  // The peer ended the stream: `clean` when it closed (recv() returned 0),
  // not by a reset or an error.
  void PeerGone(SessionContext& context, absl::string_view why, bool clean);
  // The stream is over before the drain: closes the socket, and with
  // LoadOptions::reconnect counts what it leaves unanswered and backs off
  // to connect again.
  void EndStream(SessionContext& context);
  // Waits the backoff, from `now`, and doubles it for next time.
  void ScheduleReconnect(int64_t now);

  Fd fd_;
  SslPtr ssl_;  // LoadOptions::tls, from the TCP handshake's end to the close
  // SSL_write wanted to wait with this many bytes: the retry must pass the
  // same (OpenSSL's rule for a non-blocking write). 0: none pending.
  size_t tls_write_len_ = 0;
  // OpenSSL reported a fatal error: no SSL_shutdown may follow.
  bool tls_failed_ = false;
  SessionState state_ = SessionState::kIdle;
  int index_ = 0;
  size_t local_ = 0;
  uint64_t seed_ = 0;  // Pattern position of stream offset 0.
  uint64_t sent_ = 0;
  uint64_t received_ = 0;
  uint64_t issued_ = 0;     // Messages issued.
  uint64_t completed_ = 0;  // Messages fully echoed.
  // Last progress: when a byte was received, or when the session last went
  // from owing nothing to owing echoes. A stall is measured from here.
  int64_t progress_ns_ = 0;
  // Ring of `pipeline` entries, by message: when each was issued (closed
  // loop) or due (open loop).
  int64_t* issue_times_ = nullptr;
  // Open loop: ring of `pipeline` entries, by message, of when its first
  // byte was sent; null when not kept. Messages below `started_` have it.
  int64_t* send_times_ = nullptr;
  uint64_t started_ = 0;

  // LoadOptions::reconnect only.
  // Open loop: the schedule's number of this stream's message 0, i.e. the
  // messages issued on the streams before it.
  uint64_t schedule_base_ = 0;
  int64_t reconnect_at_ns_ = 0;
  int64_t backoff_ns_ = 0;  // The next backoff; 0: the first one.
  // Failed attempts since the stream ended, and the last one's reason, for
  // the message when it stays down.
  uint32_t failed_attempts_ = 0;
  std::string last_failure_;
  bool listed_ = false;  // In SessionContext::reconnecting.
};

}  // namespace troupe::load
