#include "core/loop/inbox.h"

#include <unistd.h>

#include "concurrentqueue/concurrentqueue.h"
#include "core/base/check.h"

namespace troupe {

struct Inbox::Queues {
  moodycamel::ConcurrentQueue<Item> items;
  // Single producer (the acceptor, with a token); drained in bulk.
  moodycamel::ConcurrentQueue<Handoff> handoffs;
};

struct HandoffToken::Impl {
  explicit Impl(moodycamel::ConcurrentQueue<Handoff>& queue) : token(queue) {}
  moodycamel::ProducerToken token;
};

HandoffToken::HandoffToken(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HandoffToken::HandoffToken(HandoffToken&&) noexcept = default;
HandoffToken& HandoffToken::operator=(HandoffToken&&) noexcept = default;
HandoffToken::~HandoffToken() = default;

Inbox::Inbox(Waker waker, size_t mail_capacity)
    : waker_(std::move(waker)),
      queues_(std::make_unique<Queues>()),
      mail_capacity_(mail_capacity) {}

Inbox::~Inbox() {
  // Sockets handed over but never adopted (the reactor never ran, or ended
  // first) are still ours to close.
  Handoff handoff;
  while (queues_->handoffs.try_dequeue(handoff)) ::close(handoff.fd);
}

HandoffToken Inbox::MakeHandoffToken() {
  return HandoffToken(std::make_unique<HandoffToken::Impl>(queues_->handoffs));
}

bool Inbox::Hand(HandoffToken& token, Handoff handoff) {
  if (!queues_->handoffs.enqueue(token.impl_->token, std::move(handoff))) return false;
  waker_.Notify();
  return true;
}

size_t Inbox::TakeItems(Item* out, size_t max) { return queues_->items.try_dequeue_bulk(out, max); }

size_t Inbox::TakeHandoffs(Handoff* out, size_t max) {
  return queues_->handoffs.try_dequeue_bulk(out, max);
}

size_t Inbox::size_approx() const { return queues_->items.size_approx(); }
size_t Inbox::handoffs_approx() const { return queues_->handoffs.size_approx(); }

absl::StatusOr<std::shared_ptr<Inbox>> Inbox::Create(size_t mail_capacity) {
  absl::StatusOr<Waker> waker = Waker::Create();
  if (!waker.ok()) return waker.status();
  return std::shared_ptr<Inbox>(new Inbox(std::move(*waker), mail_capacity));
}

void Inbox::Post(Task task) {
  // Not admitted, so not counted in: kSystem, so not counted out either (a
  // kUser task here would lower mail_depth at every Post).
  Enqueue(Item{ConnectionId{}, MailClass::kSystem, Mail(), std::move(task)});
}

bool Inbox::TryPost(Task task) {
  if (!Admit()) return false;
  Enqueue(Item{ConnectionId{}, MailClass::kUser, Mail(), std::move(task)});
  return true;
}

bool Inbox::TryPostFanOut(Task task) {
  if (!Admit()) return false;
  Enqueue(Item{ConnectionId{}, MailClass::kUser, Mail(), std::move(task),
               /*hand_over_first=*/false});
  return true;
}

bool Inbox::Admit() {
  const int64_t before = mail_depth_.fetch_add(1, std::memory_order_relaxed);
  if (before >= static_cast<int64_t>(mail_capacity_)) {
    mail_depth_.fetch_sub(1, std::memory_order_relaxed);
    refused_full_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  // The high-water mark moves only while the depth sets new records, so
  // the compare-exchange is off the common path.
  int64_t max = mail_depth_max_.load(std::memory_order_relaxed);
  while (before + 1 > max &&
         !mail_depth_max_.compare_exchange_weak(max, before + 1, std::memory_order_relaxed)) {
  }
  return true;
}

bool Inbox::SendMail(ConnectionId to, Mail mail, MailClass mail_class) {
  if (mail_class == MailClass::kUser && !Admit()) return false;
  Enqueue(Item{to, mail_class, std::move(mail), nullptr});
  return true;
}

// By reference: the item is moved once, into the queue (a Mail is 80 bytes,
// and every move of it counts on the mail path).
void Inbox::Enqueue(Item&& item) {
  TROUPE_CHECK(item.to.valid() || item.task != nullptr, "empty inbox item");
  TROUPE_CHECK(queues_->items.enqueue(std::move(item)), "inbox allocation failed");
  waker_.Notify();
}

}  // namespace troupe
