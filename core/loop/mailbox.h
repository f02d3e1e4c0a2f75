// Mailbox: an actor's mail that has arrived but not yet been handed to it,
// with a capacity and a stated overflow policy (invariant 5, docs/architecture.md).
//
//   inbox (cross-thread) ──drain──► Mailbox ──mailbox phase──► OnMail
//   Send on the same reactor ──────►  (capacity, policy)
//
// Mail is handed over in the reactor's mailbox phase, never inside the
// sender's own callback, so a send never runs the receiver inline. Only user
// mail counts toward the capacity: system mail (a timer, an offload result or
// an Ask reply the actor asked for; watch requests and notices, bounces) is
// never dropped, so a reply owed to a peer cannot be shed by a flood of other
// mail. Most of it is bounded by the actor's own asking; watch traffic by its
// watchers, each watching once.
//
// When user mail arrives at a full mailbox:
//   kDropNewest  the arriving mail is dropped (the default: the sender's
//                newest work is the cheapest to lose, and order is kept)
//   kDropOldest  the oldest waiting user mail is dropped to make room
//                (for state updates where only the latest matters)
//   kCloseActor  the actor is closed (CloseReason::kMailboxOverflow); for
//                actors that must not silently lose a message
// Each outcome is counted per reason (MailDrop).
//
//   Mailbox box;
//   switch (box.Push(std::move(mail), MailClass::kUser, 1024, MailboxOverflow::kDropNewest)) { ...
//   } while (!box.empty()) handler.OnMail(box.Pop());
//
// The queue is a ring of slots, allocated on first mail (an actor that never
// gets mail pays 24 bytes), doubled when full and kept until Clear (the actor
// closes), so steady mail allocates nothing here: a std::deque would free and
// allocate a block every few mails as the queue moves through memory.
//
//   slots_ (capacity_ a power of two)
//   ┌────┬────┬────┬────┬────┬────┬────┬────┐
//   │    │    │ e0 │ e1 │ e2 │ e3 │    │    │   e0 = slots_[head_], oldest
//   └────┴────┴────┴────┴────┴────┴────┴────┘   e_i = slots_[(head_ + i) & (capacity_ - 1)]
//             head_            size_ = 4
//
// Thread safety: loop-affine (owning reactor).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "core/loop/mail.h"

namespace troupe {

// kUser: ordinary mail, bounded by mailbox and inbox capacities.
// kSystem: continuations an actor asked for (timers, offload results).
enum class MailClass : uint8_t { kUser, kSystem };

enum class MailboxOverflow : uint8_t { kDropNewest, kDropOldest, kCloseActor };
const char* MailboxOverflowName(MailboxOverflow policy);
// "drop-newest", "drop-oldest", "close" -> the policy.
absl::StatusOr<MailboxOverflow> ParseMailboxOverflow(std::string_view name);

// Why mail did not reach its actor. Counted per reactor; a new reason goes at
// the end (before kCount) and gets a name in MailDropName().
enum class MailDrop : uint8_t {
  kGone,         // the actor had closed (a stale ref)
  kInvalidRef,   // the ref names no actor at all (no generation, no such reactor)
  kInboxFull,    // the target reactor's inbox held its capacity of mail
  kMailboxFull,  // kDropNewest: the arriving mail
  kEvicted,      // kDropOldest: the oldest waiting mail, to make room
  kActorClosed,  // kCloseActor: the arriving mail and all still waiting
  kCount,
};
const char* MailDropName(MailDrop reason);

// What a request that was dropped becomes: system mail to its return
// address (core/loop/mail.h), naming where it was going, the asker's tag and
// why it did not arrive.
struct Bounced {
  ConnectionId to;
  uint64_t tag = 0;
  MailDrop reason = MailDrop::kGone;
};

class Mailbox {
 public:
  enum class PushResult { kQueued, kDroppedNewest, kEvictedOldest, kOverflow };

  // Queues `mail` unless user mail is at `capacity`; then applies `policy`.
  // `mail` is moved from only when queued (by reference: one move less).
  // kOverflow (kCloseActor): nothing was queued; the caller closes the actor.
  // kEvictedOldest: the mail that made room is moved to `*evicted` if given.
  PushResult Push(Mail&& mail, MailClass mail_class, size_t capacity, MailboxOverflow policy,
                  Mail* evicted = nullptr);
  // The oldest mail. Requires !empty().
  Mail Pop();
  // Drops everything, handing each dropped mail to `dropped` first (to
  // bounce requests); returns how many user mails were dropped.
  size_t Clear(absl::FunctionRef<void(Mail&)> dropped = [](Mail&) {});

  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  size_t user_mail() const { return user_; }
  // Slots the ring holds now (0 until the first mail, and after a large
  // ring is emptied).
  size_t capacity() const { return capacity_; }

 private:
  struct Entry {
    Mail mail;
    MailClass mail_class = MailClass::kUser;
  };
  Entry& At(uint32_t i) { return slots_[(head_ + i) & (capacity_ - 1)]; }
  // An emptied ring at most this large is kept for the next mail (24 KiB);
  // a larger one, grown by a burst, is freed.
  static constexpr uint32_t kKeptCapacity = 256;
  // Doubles the ring (the first mail: makes it), keeping the order.
  void Grow();

  std::unique_ptr<Entry[]> slots_;  // capacity_ entries; null until the first mail
  uint32_t capacity_ = 0;           // 0 or a power of two
  uint32_t head_ = 0;               // the oldest entry's slot
  uint32_t size_ = 0;               // entries queued
  uint32_t user_ = 0;               // kUser entries among them
};

}  // namespace troupe
