// One worker thread of echo-load --chat (load/chat.h): its contiguous share
// of the members, the talkers among them, and the epoll loop that takes
// them through connect, join, traffic and drain, checking every line each
// member gets.
//
//   auto w = ChatWorker::Create(options, room, sources, /*thread=*/0, first, count);
//   (*w)->Connect(deadline_ns, window);   // On the worker thread...
//   (*w)->Join(join_deadline_ns);         // ... once every thread connected,
//   (*w)->Run(times);                     // ... and once the room is complete.
//
// Flow control: the worker tells its ChatTracker (load/chat_tracker.h)
// every line a member gets, and publishes how far its members have got on
// each talker in the ChatRoom (load/chat_room.h), which its talkers, and
// the other threads', read to open their windows.
//
// Thread safety: thread-compatible; owned by one thread at a time, except
// for what it shares through the ChatRoom.
#pragma once

#include <sys/epoll.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/fd.h"
#include "core/net/address.h"
#include "load/chat.h"
#include "load/chat_room.h"
#include "load/chat_tracker.h"
#include "load/schedule.h"

namespace troupe::load {

// A worker's share of the report.
struct ChatResult {
  ChatCounts counts;
  int connected = 0;
  std::string first_connect_error;
  std::vector<std::string> errors;  // At most ChatReport::kMaxErrorMessages.
  int64_t loop_end_ns = 0;          // When its measured loop stopped.
};

// Talker t is member TalkerMember(t, ...): spread evenly over the members,
// so over the threads too, and talker 0 is member 0 (the join's prober).
int TalkerMember(int talker, int members, int talkers);

class ChatWorker {
 public:
  // Members first_member .. first_member + count - 1 on thread `thread`.
  // `options`, `room` and `sources` (empty: the kernel chooses) must
  // outlive the worker.
  static absl::StatusOr<std::unique_ptr<ChatWorker>> Create(const ChatOptions& options,
                                                            ChatRoom& room,
                                                            const std::vector<Address>& sources,
                                                            int thread, int first_member,
                                                            int count);

  // Phase 1: opens every member, at most `window` handshakes at a time.
  void Connect(int64_t deadline_ns, int window);
  // Phase 2: reads hellos until each of its members had one (on member 0's
  // thread: until every member of the room had one; it sends them), or
  // until `deadline_ns`.
  void Join(int64_t deadline_ns);
  // Phases 3 and 4: talks until times.end_ns, then drains and closes.
  void Run(const PhaseTimes& times);
  // Closes whatever is open (also when the run is aborted).
  void CloseAll();

  ChatResult& result() { return result_; }

 private:
  enum class State : uint8_t { kIdle, kConnecting, kOpen, kClosed };
  struct Member {
    Fd fd;
    int index = 0;    // The member's number in the run.
    int talker = -1;  // The talker it is; -1: it only listens.
    State state = State::kIdle;
    bool joined = false;
    std::string in;   // The start of a line whose "\n" has not come.
    std::string out;  // Bytes to send, from out_sent on.
    size_t out_sent = 0;
  };
  // A talker on this thread.
  struct Talker {
    int talker = 0;
    size_t member = 0;  // Its Member's place in members_.
    uint64_t sent = 0;
    // Room-wide done the last time it was read, and when it last moved (or
    // the talker went from owing nothing to owing lines): stalls count from
    // there.
    uint64_t done = 0;
    int64_t progress_ns = 0;
    bool stopped = false;
  };
  // epoll data of the room's wake eventfd; a member's is its place.
  static constexpr uint64_t kWakeTag = UINT64_MAX;
  static constexpr int kMaxEvents = 1024;

  ChatWorker(const ChatOptions& options, ChatRoom& room, const std::vector<Address>& sources,
             Fd epoll, int thread, int first_member, int count);

  // Waits for events until `deadline_ns` and hands each member's to
  // `handle`; then publishes what moved (PublishDone).
  template <typename Handler>
  void Poll(int64_t deadline_ns, Handler handle);
  void HandleEvent(Member& m, uint32_t events);
  void ConnectFailed(Member& m, absl::string_view why);
  // Reads until the socket is drained, checking each whole line.
  void Read(Member& m, uint32_t events);
  void OnLine(Member& m, absl::string_view line, int64_t now);
  void OnChatLine(Member& m, const absl::string_view name, uint32_t talker, uint64_t seq,
                  int64_t send_ns, int64_t now);
  // Publishes the done values that moved, and wakes their talkers' threads.
  void PublishDone();
  // Sends what `m` has to send, until the kernel takes no more.
  void Flush(Member& m);
  // The server ended `m` (or it could not be read or written): closed.
  void Lose(Member& m, absl::string_view why);
  // Closes `m` and stops waiting for it (its counts are taken back).
  void Drop(Member& m);
  // Talks: issues what the windows (and in the open loop, the schedule)
  // allow. Returns true when a talker waits for its window only; sets
  // `*next_due_ns` (open loop) to when the next line falls due.
  bool Issue(int64_t now, int64_t* next_due_ns);
  void CheckStalls(int64_t now);
  void StopTalker(Talker& t);
  void Drain(int64_t end_ns);
  // Counts what the members still lack as lost.
  void CountMissing();
  // Counts `n` on `counter`, and keeps make_message()'s text while fewer
  // than ChatReport::kMaxErrorMessages are kept.
  template <typename MakeMessage>
  void Error(uint64_t& counter, uint64_t n, MakeMessage make_message);
  size_t Local(const Member& m) const { return static_cast<size_t>(&m - members_.data()); }

  const ChatOptions& options_;
  ChatRoom& room_;
  const std::vector<Address>& sources_;
  Fd epoll_;
  const int thread_;
  const int talkers_;
  const uint64_t pipeline_;
  const int members_total_;
  std::vector<Member> members_;  // Never resized: epoll data indexes it.
  std::vector<Talker> own_;      // The talkers among members_.
  ChatTracker tracker_;
  // By talker: the name its lines come under, from the first one.
  std::vector<std::string> names_;
  OpenLoopSchedule open_loop_;
  int64_t measure_start_ns_ = 0;
  int64_t end_ns_ = 0;
  int64_t stall_ns_ = 0;            // 0: no stall check.
  std::vector<bool> wake_threads_;  // Threads to wake after this round.
  std::unique_ptr<char[]> read_buffer_;
  size_t read_capacity_ = 0;
  size_t max_line_ = 0;  // Longest acceptable line, name included.
  int joined_ = 0;       // Members here that had a hello.
  // Phase 3 on: the lines are counted and checked, the rings in use.
  bool traffic_ = false;
  ChatResult result_;
  epoll_event events_[kMaxEvents];
};

}  // namespace troupe::load
