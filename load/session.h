// One client connection of the load and its state machine: connect, issue
// messages (closed loop: as echoes make room; open loop: as they fall due),
// send, read and verify the echoes, and close, counting whatever goes wrong
// in the worker's tally. Its worker owns it, polls its socket and hands it
// every event.
//
//   Session& s = sessions[i];
//   s.Init(first_index + i, i, &issue_times[i * pipeline]);
//   s.StartConnect(context, target, source, epoll_fd);
//   ...
//   s.HandleEvent(context, events, MonotonicNanos());
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

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/base/fd.h"
#include "core/net/address.h"
#include "load/pattern.h"
#include "load/schedule.h"
#include "load/tally.h"

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
  int64_t measure_start_ns = 0;
  // No new messages; each session closes once all it sent is back.
  bool draining = false;
  int open = 0;  // Sessions in SessionState::kOpen.
  // Scratch for recv(), kReadChunk bytes, shared by the sessions.
  std::unique_ptr<uint8_t[]> read_buffer{new uint8_t[kReadChunk]};
};

enum class SessionState : uint8_t { kIdle, kConnecting, kOpen, kClosed };

class Session {
 public:
  // `index`: the connection's number in the run, for its stream and its
  // error messages; `local`: its place in its worker (epoll data and open
  // loop slot); `issue_times`: a ring of `pipeline` entries.
  void Init(int index, size_t local, int64_t* issue_times);

  SessionState state() const { return state_; }
  int index() const { return index_; }
  // All it sent has come back.
  bool AllEchoed() const { return received_ == sent_; }

  // Starts a non-blocking handshake and adds the socket to `epoll_fd`,
  // edge-triggered, with its `local` number as data. False when it failed
  // at once (counted).
  bool StartConnect(SessionContext& context, const Address& target, const Address* source,
                    int epoll_fd);
  // Handles an event during the handshake. False while it is still under
  // way; true once it has ended, opened or failed (counted either way).
  bool FinishConnect(SessionContext& context, const Address& target, uint32_t events);
  void FailConnect(SessionContext& context, absl::string_view why);

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
  // Reads until the socket is drained. False when it was closed.
  bool ReadAndVerify(SessionContext& context, uint32_t events, int64_t now);
  void CompleteMessages(SessionContext& context, int64_t now);
  void PeerGone(SessionContext& context, absl::string_view why);

  Fd fd_;
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
};

}  // namespace troupe::load
