#include "core/loop/inbox.h"

#include "core/base/check.h"

namespace troupe {

absl::StatusOr<std::shared_ptr<Inbox>> Inbox::Create(size_t mail_capacity) {
  absl::StatusOr<Waker> waker = Waker::Create();
  if (!waker.ok()) return waker.status();
  return std::shared_ptr<Inbox>(new Inbox(std::move(*waker), mail_capacity));
}

void Inbox::Post(Task task) {
  Item item;
  item.task = std::move(task);
  Enqueue(std::move(item));
}

bool Inbox::TryPost(Task task) {
  if (!Admit()) return false;
  Item item;
  item.mail_class = MailClass::kUser;
  item.task = std::move(task);
  Enqueue(std::move(item));
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
  Item item;
  item.to = to;
  item.mail_class = mail_class;
  item.mail = std::move(mail);
  Enqueue(std::move(item));
  return true;
}

void Inbox::Enqueue(Item item) {
  TROUPE_CHECK(item.to.valid() || item.task != nullptr, "empty inbox item");
  TROUPE_CHECK(queue_.enqueue(std::move(item)), "inbox allocation failed");
  waker_.Notify();
}

}  // namespace troupe
