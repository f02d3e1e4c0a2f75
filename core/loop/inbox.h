// Inbox: a reactor's one door for work from other threads: the acceptor's
// socket handoffs, posted tasks and mail for its connections, each in a
// lock-free queue (moodycamel ConcurrentQueue, kept out of this header), plus
// the Waker that rouses the reactor when it sleeps.
//
//   acceptor thread      inbox->Hand(token, handoff) ─┐
//   any thread           inbox->Post(task)           ─┼─enqueue + Notify─► reactor:
//   any thread           inbox->SendMail(to, mail)   ─┘   TakeHandoffs / TakeItems
//                                                          (bulk dequeue)
//
// Handoffs have their own single-producer queue (the acceptor enqueues with a
// HandoffToken), so a flood of mail never delays a new connection.
//
// It is shared (std::shared_ptr) so that a thread outliving the reactor, such
// as an offload worker finishing late, can hold a std::weak_ptr: lock() either
// fails (the reactor is gone and the mail is dropped) or keeps the queue and
// its eventfd alive for the enqueue, never touching freed memory or a reused
// descriptor number.
//
// Per-sender order: each producing thread enqueues through moodycamel's
// implicit per-thread producer, which is FIFO, so one thread's items arrive
// in the order it sent them.
//
// Steady mail allocates nothing here: the Mail holds small values in place
// (core/loop/mail.h) and the queue reuses its emptied blocks
// (tests/core/mail_alloc_test.cc).
//
// Bounded: user mail beyond `mail_capacity` waiting in the queue is refused
// (SendMail returns false, counted as MailDrop::kInboxFull), so a flood of
// mail to one reactor cannot grow it without limit. Tasks (stop, drain,
// adoption, broadcasts' fan-out) and system mail (replies an actor asked
// for) are never refused: they are bounded by whoever asked for them. The
// count is one atomic add per mail on each side; its high-water mark is kept
// exactly, for /metrics.
//
// Thread safety: Hand, Post and SendMail any thread (Hand from the token's
// one thread); TakeHandoffs, TakeItems, MailTaken and waker()'s consumer side
// on the owning reactor only; counters any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "core/loop/connection_id.h"
#include "core/loop/mail.h"
#include "core/loop/mailbox.h"
#include "core/loop/waker.h"
#include "core/net/address.h"

namespace troupe {

// A socket on its way from the acceptor to a reactor.
struct Handoff {
  int fd = -1;
  Address peer;
};

// A producer's place in one inbox's handoff queue (moodycamel's producer
// token: FIFO and cheapest per producer). One per producing thread per
// inbox; it must not outlive the inbox.
class HandoffToken {
 public:
  HandoffToken(HandoffToken&&) noexcept;
  HandoffToken& operator=(HandoffToken&&) noexcept;
  ~HandoffToken();

 private:
  friend class Inbox;
  struct Impl;
  explicit HandoffToken(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class Inbox {
 public:
  using Task = absl::AnyInvocable<void() &&>;
  struct Item {
    ConnectionId to;  // valid(): mail for `to`; otherwise `task`
    MailClass mail_class = MailClass::kUser;
    Mail mail;
    Task task;
    // A task that only queues mail (TryPostFanOut) runs without the mail
    // queued before it being handed over first.
    bool hand_over_first = true;
  };
  // 65,536 mails: a few MiB at most per reactor, and far more than one
  // turn drains (kMaxInboxPerTurn in reactor.cc), so only a real flood
  // reaches it.
  static constexpr size_t kDefaultMailCapacity = 65536;

  static absl::StatusOr<std::shared_ptr<Inbox>> Create(size_t mail_capacity = kDefaultMailCapacity);

  // Any thread. Never runs `task` inline; never refused.
  void Post(Task task);
  // Any thread. Like Post, for tasks that carry user mail (a broadcast's
  // fan-out): counted toward the mail capacity and refused beyond it.
  bool TryPost(Task task);
  // Any thread. TryPost for a task that only queues mail (a broadcast's
  // fan-out: DeliverMailInLoop and nothing else).
  bool TryPostFanOut(Task task);
  // Any thread. False when user mail is at capacity (counted); system mail
  // is always taken.
  bool SendMail(ConnectionId to, Mail mail, MailClass mail_class = MailClass::kUser);
  // Any thread: a send that named no actor (counted here, where every
  // sender can reach).
  void CountInvalidRef() { invalid_refs_.fetch_add(1, std::memory_order_relaxed); }

  // The acceptor's thread. Takes ownership of `handoff.fd` on success; false
  // (out of memory) leaves it with the caller, who closes it.
  HandoffToken MakeHandoffToken();
  bool Hand(HandoffToken& token, Handoff handoff);

  // Owner. Moves up to `max` waiting items (or handoffs) into `out`; returns
  // how many.
  size_t TakeItems(Item* out, size_t max);
  size_t TakeHandoffs(Handoff* out, size_t max);

  Waker& waker() { return waker_; }
  ~Inbox();
  // Any thread (approximate).
  size_t size_approx() const;
  size_t handoffs_approx() const;
  // Owner: `n` user mails were dequeued.
  void MailTaken(size_t n) {
    mail_depth_.fetch_sub(static_cast<int64_t>(n), std::memory_order_relaxed);
  }

  // Any thread.
  uint64_t mail_depth() const { return Positive(mail_depth_.load(std::memory_order_relaxed)); }
  uint64_t mail_depth_max() const {
    return Positive(mail_depth_max_.load(std::memory_order_relaxed));
  }
  uint64_t refused_full() const { return refused_full_.load(std::memory_order_relaxed); }
  uint64_t invalid_refs() const { return invalid_refs_.load(std::memory_order_relaxed); }

 private:
  struct Queues;  // the moodycamel queues (inbox.cc)
  Inbox(Waker waker, size_t mail_capacity);
  void Enqueue(Item&& item);
  // Counts one user item in, or refuses it (counted) at capacity.
  bool Admit();
  static uint64_t Positive(int64_t v) { return v > 0 ? static_cast<uint64_t>(v) : 0; }

  Waker waker_;
  std::unique_ptr<Queues> queues_;
  const size_t mail_capacity_;
  std::atomic<int64_t> mail_depth_{0};  // user mail enqueued, not yet taken
  std::atomic<int64_t> mail_depth_max_{0};
  std::atomic<uint64_t> refused_full_{0};
  std::atomic<uint64_t> invalid_refs_{0};
};

}  // namespace troupe
