// Inbox: a reactor's door for work from other threads: posted tasks and
// mail for its connections, in one multi-producer lock-free queue, plus the
// Waker that rouses the reactor when it sleeps.
//
//   producer (any thread)                      reactor (owner)
//   inbox->Post(task) ──enqueue + Notify──►    DrainInboxInLoop: try_dequeue_bulk
//   inbox->SendMail(to, mail)                  (tasks run, mail goes to `to`)
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
// Thread safety: Post and SendMail any thread; queue() and waker()'s
// consumer side on the owning reactor only.
#pragma once

#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "concurrentqueue/concurrentqueue.h"
#include "core/connection.h"
#include "core/mail.h"
#include "core/waker.h"

namespace troupe {

class Inbox {
 public:
  using Task = absl::AnyInvocable<void() &&>;
  struct Item {
    ConnectionId to;  // valid(): mail for `to`; otherwise `task`
    Mail mail;
    Task task;
  };

  static absl::StatusOr<std::shared_ptr<Inbox>> Create();

  // Any thread. Never runs `task` inline.
  void Post(Task task) { Enqueue(Item{ConnectionId{}, Mail(), std::move(task)}); }
  // Any thread.
  void SendMail(ConnectionId to, Mail mail) { Enqueue(Item{to, std::move(mail), nullptr}); }

  moodycamel::ConcurrentQueue<Item>& queue() { return queue_; }
  Waker& waker() { return waker_; }
  size_t size_approx() const { return queue_.size_approx(); }

 private:
  explicit Inbox(Waker waker) : waker_(std::move(waker)) {}
  void Enqueue(Item item);

  Waker waker_;
  moodycamel::ConcurrentQueue<Item> queue_;
};

}  // namespace troupe
