// One worker thread's account of echo-load --chat's lines (load/chat.h):
// for each of its members and each talker, the next line due, the lines
// counted lost, and for each talker the flow-control ring that says how far
// every member of the thread has got.
//
//   ChatTracker tracker(/*members=*/50, /*talkers=*/3, /*pipeline=*/4);
//   tracker.SetListeners(t, 49);                 // once the room is complete
//   ChatTracker::Receipt r = tracker.Receive(member, t, seq);
//   if (r.kind == ChatTracker::kDelivered && r.skipped > 0) { /* lost */ }
//   tracker.TakeChanged([&](int t, uint64_t done) { room.PublishDone(w, t, done); });
//
// The ring of talker t holds, for each line still in flight (at most
// `pipeline` of them: the talker sends no further), how many of the
// thread's members have it. When the oldest line's count reaches the
// members that listen to t, done(t) moves past it:
//
//   talker t's lines:  done                       done + pipeline
//                      |  ring: members with it   |
//                      v                          v
//   ...delivered all...[ 7 | 3 | 0 | 0 ]........never sent yet
//
// A member that skips lines (they are lost) counts for each, so one lost
// line costs its talker nothing more than the error; a member that is
// dropped takes its counts back and is no longer waited for.
//
// Thread safety: thread-compatible; one worker thread's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"

namespace troupe::load {

class ChatTracker {
 public:
  // done() of a talker nobody here listens to: it holds nobody back.
  static constexpr uint64_t kAll = UINT64_MAX;
  // Lost lines remembered, so that one coming late counts as reordered
  // rather than duplicate; about 3 MiB at most. Past that, a late line
  // counts as a duplicate.
  static constexpr size_t kMaxGaps = 64 * 1024;

  ChatTracker(size_t members, int talkers, uint64_t pipeline);

  enum Kind { kDelivered, kDuplicate, kReordered };
  struct Receipt {
    Kind kind = kDelivered;
    // kDelivered: the lines it skipped (now lost); kReordered: the line it
    // had got before this one.
    uint64_t skipped = 0;
    uint64_t previous = 0;
  };
  // Member `member` got talker t's line `seq`, which the talker has sent
  // (the caller checks), and its window bounds: seq < done(t) + pipeline.
  Receipt Receive(size_t member, int talker, uint64_t seq);
  // The line member `member` expects next from talker t.
  uint64_t next(size_t member, int talker) const { return next_[Slot(member, talker)]; }

  // How many members here listen to talker t: from then on done(t) counts.
  // 0: kAll.
  void SetListeners(int talker, int listeners);
  // Every member here that listens has talker t's lines below this.
  uint64_t done(int talker) const { return talkers_[static_cast<size_t>(talker)].done; }
  // Member `member`, which is talker `own_talker` (-1: none), is gone: it
  // takes back its counts and is waited for no more.
  void Drop(size_t member, int own_talker);
  // Calls `f(talker, done)` for each done that moved since the last call.
  template <typename F>
  void TakeChanged(F f) {
    for (size_t t = 0; t < talkers_.size(); ++t) {
      if (!talkers_[t].changed) continue;
      talkers_[t].changed = false;
      f(static_cast<int>(t), talkers_[t].done);
    }
  }

 private:
  struct PerTalker {
    uint64_t done = 0;
    int listeners = 0;
    bool changed = false;
  };
  size_t Slot(size_t member, int talker) const {
    return member * talkers_.size() + static_cast<size_t>(talker);
  }
  uint32_t* Ring(int talker) { return &ring_[static_cast<size_t>(talker) * pipeline_]; }
  // Moves done(t) past every line all its listeners here have.
  void Settle(int talker);

  const uint64_t pipeline_;
  std::vector<PerTalker> talkers_;
  std::vector<uint32_t> ring_;  // talkers x pipeline counts.
  std::vector<uint64_t> next_;  // members x talkers.
  // (Slot, line) of the lines counted lost and not seen since.
  absl::flat_hash_set<std::pair<uint64_t, uint64_t>> gaps_;
};

}  // namespace troupe::load
