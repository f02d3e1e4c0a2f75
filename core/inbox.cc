#include "core/inbox.h"

#include "core/check.h"

namespace troupe {

absl::StatusOr<std::shared_ptr<Inbox>> Inbox::Create() {
  absl::StatusOr<Waker> waker = Waker::Create();
  if (!waker.ok()) return waker.status();
  return std::shared_ptr<Inbox>(new Inbox(std::move(*waker)));
}

void Inbox::Enqueue(Item item) {
  TROUPE_CHECK(item.to.valid() || item.task != nullptr, "empty inbox item");
  TROUPE_CHECK(queue_.enqueue(std::move(item)), "inbox allocation failed");
  waker_.Notify();
}

}  // namespace troupe
