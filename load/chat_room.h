// What the worker threads of echo-load --chat (load/chat.h) share: how far
// each talker has sent, how far each thread's members have received each
// talker's lines, the join count, and the wake-up of a thread whose talkers
// wait for the others. Every other piece of state belongs to one thread.
//
//   ChatRoom room(/*threads=*/2, /*talkers=*/3);
//   room.PublishSent(t, sent);                // talker t's thread, before send()
//   room.PublishDone(w, t, done);             // thread w: its members have t's lines < done
//   if (sent - room.Done(t) < pipeline) ...   // talker t may send another
//
// Flow control: talker t's line is in flight until every other member has it
// (or has skipped it: see load/chat_worker.h). Thread w publishes done(w, t),
// how many of t's lines all its members have; the room's Done(t) is the
// minimum over the threads. A thread whose talkers all wait for that
// minimum sleeps in epoll_wait; another thread that moves a done(w, t)
// wakes it through its eventfd, and only while it is asleep:
//
//   waiting thread v                      thread w that advanced done(w, t)
//   PrepareToWait(v): waiting[v] = true   PublishDone(w, t, n)
//   re-check Done(t) for its talkers      Wake(v): if waiting[v], clear it
//   epoll_wait(..., wake_fd(v) ...)                and write wake_fd(v)
//   FinishWaiting(v)
//
// Both sides store, then load the other's variable, all sequentially
// consistent, so at least one sees the other's store: either v sees the new
// done and does not sleep, or w sees waiting[v] and writes the eventfd (the
// sleeping-flag half of the inbox wake protocol the reactors use).
//
// Thread safety: thread-safe. Each method names who may call it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/fd.h"

namespace troupe::load {

class ChatRoom {
 public:
  // Done() for a talker no member of a thread listens to (all of them are
  // gone, or the thread holds only the talker itself).
  static constexpr uint64_t kAll = UINT64_MAX;

  static absl::StatusOr<std::unique_ptr<ChatRoom>> Create(int threads, int talkers);

  int threads() const { return threads_; }
  int talkers() const { return talkers_; }

  // Which thread talker t's member is on. Set before the threads start,
  // only read after.
  void SetOwner(int talker, int thread) { owner_[static_cast<size_t>(talker)] = thread; }
  int Owner(int talker) const { return owner_[static_cast<size_t>(talker)]; }

  // Talker t's thread, before it sends line `sent - 1`; any thread reads.
  void PublishSent(int talker, uint64_t sent) {
    sent_[static_cast<size_t>(talker)].value.store(sent, std::memory_order_release);
  }
  uint64_t Sent(int talker) const {
    return sent_[static_cast<size_t>(talker)].value.load(std::memory_order_acquire);
  }
  // Talker t sends no more (the run ended, or it stalled or closed): Sent()
  // is final. Talker t's thread.
  void PublishStopped(int talker) {
    stopped_[static_cast<size_t>(talker)].value.store(1, std::memory_order_release);
  }
  bool Stopped(int talker) const {
    return stopped_[static_cast<size_t>(talker)].value.load(std::memory_order_acquire) != 0;
  }

  // Thread `thread` only: its members have every line of `talker` below
  // `done` (kAll: it has no members that listen).
  void PublishDone(int thread, int talker, uint64_t done) {
    done_[Slot(thread, talker)].value.store(done, std::memory_order_seq_cst);
  }
  // Any thread: the lines of `talker` every member has (min over threads).
  uint64_t Done(int talker) const;
  // Any thread: the thread whose members lag furthest behind on `talker`.
  int LaggingThread(int talker) const;

  // The wake-up protocol above. `thread`'s own calls, but Wake (any thread).
  void PrepareToWait(int thread) {
    waiting_[static_cast<size_t>(thread)].value.store(1, std::memory_order_seq_cst);
  }
  void FinishWaiting(int thread);
  void Wake(int thread);
  // `thread` only, when epoll reports its wake_fd readable.
  void DrainWake(int thread);
  int wake_fd(int thread) const { return wake_fds_[static_cast<size_t>(thread)].get(); }

  // The join: members that got a hello line. Any thread.
  void Joined() { joined_.fetch_add(1, std::memory_order_relaxed); }
  int joined() const { return joined_.load(std::memory_order_relaxed); }

 private:
  // One per cache line, so that threads writing their own never share one
  // (about 100 KiB for 16 threads and 100 talkers).
  struct alignas(64) Padded {
    std::atomic<uint64_t> value{0};
  };

  ChatRoom(int threads, int talkers, std::vector<Fd> wake_fds);
  size_t Slot(int thread, int talker) const {
    return static_cast<size_t>(thread) * static_cast<size_t>(talkers_) +
           static_cast<size_t>(talker);
  }

  const int threads_;
  const int talkers_;
  std::unique_ptr<Padded[]> sent_;
  std::unique_ptr<Padded[]> stopped_;
  std::unique_ptr<Padded[]> done_;  // threads_ rows of talkers_.
  std::unique_ptr<Padded[]> waiting_;
  std::vector<Fd> wake_fds_;  // Non-blocking eventfds, one per thread.
  std::vector<int> owner_;    // By talker.
  std::atomic<int> joined_{0};
};

}  // namespace troupe::load
