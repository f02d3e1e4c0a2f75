// Churn mode (LoadOptions::churn): one worker thread's slots, each running
// cycles of connect, send one message, verify its echo, close, as fast as
// the server lets it, on the worker's epoll loop. It measures what a server
// pays per connection (accept, setup, teardown) rather than per message.
//
//   ChurnLoop churn(options, stream, sources, epoll_fd, first_index, count, tally);
//   churn.Run(times, cpu);  // warmup and measured window, then the drain
//
// One slot's cycle (LoadOptions::ChurnClose says how it closes):
//
//   kIdle --StartCycle--> kConnecting --writable--> kOpen --echo verified--+
//     ^                                                                    |
//     |                       kFin: shutdown(SHUT_WR) --> kClosing         |
//     |                                      server's FIN |                |
//     +---------- completed (counted) <-------------------+--- kReset: RST -+
//     +---------- failed (an error kind, counted) <--- any state
//
// A completed cycle is a message of the report: its latency runs from the
// start of the connect to the verified echo; it counts in the measured
// window by when its close completed. After a failure the slot starts its
// next cycle at once. Each cycle sends stream SeedFor(index + cycle *
// connections), so consecutive connections of a slot send different bytes,
// and a server that answers with an old connection's bytes is caught too.
//
// Thread safety: thread-compatible; owned by one worker thread.
#pragma once

#include <sys/epoll.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/base/fd.h"
#include "core/net/address.h"
#include "load/client_cpu.h"
#include "load/load_client.h"
#include "load/pattern.h"
#include "load/schedule.h"
#include "load/tally.h"

namespace troupe::load {

class ChurnLoop {
 public:
  // Slots first_index .. first_index + count - 1 of options.connections.
  // `options`, `stream`, `sources` (empty: let the kernel choose) and
  // `tally` must outlive the loop; `epoll_fd` is the worker's.
  ChurnLoop(const LoadOptions& options, const Stream& stream, const std::vector<Address>& sources,
            int epoll_fd, int first_index, int count, WorkerTally& tally);

  // Runs cycles from now until times.end_ns, then gives the cycles in flight
  // the drain (stall timeout or 1 s, whichever is longer) to finish; one
  // that does not is incomplete. Ends the tally's loop and finishes it, and
  // measures this thread's CPU over the measured window in `cpu`.
  void Run(const PhaseTimes& times, ThreadCpuWindow& cpu);

 private:
  enum class State : uint8_t { kIdle, kConnecting, kOpen, kClosing };
  struct Slot {
    Fd fd;
    State state = State::kIdle;
    int index = 0;       // The connection number, for its streams and errors.
    uint64_t cycle = 0;  // Cycles started, the current one included.
    uint64_t seed = 0;   // The current cycle's stream.
    uint64_t sent = 0;
    uint64_t received = 0;
    int64_t start_ns = 0;     // The connect began.
    int64_t echoed_ns = 0;    // The echo was verified.
    int64_t progress_ns = 0;  // Connected, or a byte came: stalls count from here.
  };

  // Takes events per epoll_wait; more only lengthens one loop turn.
  static constexpr int kMaxEvents = 1024;

  // Starts the slot's next cycle, unless draining. A connect that fails at
  // once is counted, and the slot is retried on the next loop turn.
  void StartCycle(Slot& s, int64_t now);
  void HandleEvent(Slot& s, uint32_t events, int64_t now);
  // Sends what is left of the message; false when that failed (counted).
  bool Flush(Slot& s);
  // Reads until the socket is drained, verifying; moves on when the echo
  // is complete or the server closed.
  void Read(Slot& s, uint32_t events, int64_t now);
  // The whole echo is back: close as LoadOptions::churn_close says.
  void Echoed(Slot& s, int64_t now);
  // The cycle ended well: counts it and starts the next.
  void Complete(Slot& s, int64_t now);
  // Closes the slot's socket; starts the next cycle.
  void EndCycle(Slot& s, int64_t now);
  // " (churn cycle N)", appended to each error.
  static std::string CycleNote(const Slot& s);
  // Fails the connects, stalls and closes that have waited too long.
  void CheckDeadlines(int64_t now);
  // Waits for events until `deadline_ns` and handles them.
  void PollOnce(int64_t deadline_ns);

  const LoadOptions& options_;
  const Stream& stream_;
  const std::vector<Address>& sources_;
  const int epoll_fd_;
  WorkerTally& tally_;
  std::vector<Slot> slots_;    // Never resized: epoll data indexes it.
  std::vector<size_t> retry_;  // Slots whose connect failed at once.
  int64_t connect_ns_ = 0;
  int64_t stall_ns_ = 0;  // 0: no stall check.
  int64_t measure_start_ns_ = 0;
  bool draining_ = false;  // No new cycles; completions no longer count.
  size_t busy_ = 0;        // Slots not kIdle.
  uint64_t next_source_ = 0;
  std::unique_ptr<uint8_t[]> read_buffer_;  // kReadChunk bytes.
  epoll_event events_[kMaxEvents];
};

}  // namespace troupe::load
