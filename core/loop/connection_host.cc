#include "core/loop/connection_host.h"

#include <utility>

namespace troupe {

std::optional<MailDrop> ConnectionHost::Offer(Mailbox& box, ConnectionId to, Mail mail,
                                              MailClass mail_class, size_t capacity,
                                              MailboxOverflow policy) {
  const ReturnAddress address = mail.return_address();
  Mail evicted;
  switch (box.Push(std::move(mail), mail_class, capacity, policy, &evicted)) {
    case Mailbox::PushResult::kQueued:
      MailboxDepthChanged(1, box.size());
      return std::nullopt;
    case Mailbox::PushResult::kEvictedOldest:
      counters_.CountMailDrop(MailDrop::kEvicted);  // the new one took its place
      Bounce(evicted, to, MailDrop::kEvicted);
      return std::nullopt;
    case Mailbox::PushResult::kDroppedNewest:
      if (address.valid() && bounce_) bounce_(address, to, MailDrop::kMailboxFull);
      return MailDrop::kMailboxFull;
    case Mailbox::PushResult::kOverflow:
      if (address.valid() && bounce_) bounce_(address, to, MailDrop::kActorClosed);
      return MailDrop::kActorClosed;
  }
  return std::nullopt;
}

void ConnectionHost::DropWaiting(Mailbox& box, ConnectionId to, MailDrop reason) {
  const size_t waiting = box.size();
  if (waiting == 0) return;
  box.Clear([&](Mail& mail) { Bounce(mail, to, reason); });
  MailboxDepthChanged(-static_cast<int64_t>(waiting), 0);
  counters_.CountMailDrop(reason, waiting);
}

}  // namespace troupe
