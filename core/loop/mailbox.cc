#include "core/loop/mailbox.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/check.h"
#include "core/base/string_view_compat.h"

namespace troupe {

const char* MailboxOverflowName(MailboxOverflow policy) {
  switch (policy) {
    case MailboxOverflow::kDropNewest:
      return "drop-newest";
    case MailboxOverflow::kDropOldest:
      return "drop-oldest";
    case MailboxOverflow::kCloseActor:
      return "close";
  }
  return "?";
}

absl::StatusOr<MailboxOverflow> ParseMailboxOverflow(std::string_view name) {
  if (name == "drop-newest") return MailboxOverflow::kDropNewest;
  if (name == "drop-oldest") return MailboxOverflow::kDropOldest;
  if (name == "close") return MailboxOverflow::kCloseActor;
  return absl::InvalidArgumentError(absl::StrCat("unknown mailbox overflow policy '", AsAbsl(name),
                                                 "' (known: drop-newest, drop-oldest, close)"));
}

const char* MailDropName(MailDrop reason) {
  switch (reason) {
    case MailDrop::kGone:
      return "gone";
    case MailDrop::kInvalidRef:
      return "invalid_ref";
    case MailDrop::kInboxFull:
      return "inbox_full";
    case MailDrop::kMailboxFull:
      return "mailbox_full";
    case MailDrop::kEvicted:
      return "evicted";
    case MailDrop::kActorClosed:
      return "actor_closed";
    case MailDrop::kCount:
      break;
  }
  return "unknown";
}

Mailbox::PushResult Mailbox::Push(Mail mail, MailClass mail_class, size_t capacity,
                                  MailboxOverflow policy, Mail* evicted) {
  PushResult result = PushResult::kQueued;
  if (mail_class == MailClass::kUser && user_ >= capacity) {
    switch (policy) {
      case MailboxOverflow::kDropNewest:
        return PushResult::kDroppedNewest;
      case MailboxOverflow::kCloseActor:
        return PushResult::kOverflow;
      case MailboxOverflow::kDropOldest: {
        if (capacity == 0) return PushResult::kDroppedNewest;  // no room to make
        // The first user entry; system entries before it stay. O(n) only on
        // overflow, and n is bounded by the capacity plus owed replies.
        for (auto it = queue_->begin(); it != queue_->end(); ++it) {
          if (it->mail_class != MailClass::kUser) continue;
          if (evicted != nullptr) *evicted = std::move(it->mail);
          queue_->erase(it);
          --user_;
          break;
        }
        result = PushResult::kEvictedOldest;
        break;
      }
    }
  }
  if (queue_ == nullptr) queue_ = std::make_unique<std::deque<Entry>>();
  queue_->push_back(Entry{std::move(mail), mail_class});
  if (mail_class == MailClass::kUser) ++user_;
  return result;
}

Mail Mailbox::Pop() {
  TROUPE_CHECK(!empty(), "Mailbox::Pop on an empty mailbox");
  Entry entry = std::move(queue_->front());
  queue_->pop_front();
  if (entry.mail_class == MailClass::kUser) --user_;
  return std::move(entry.mail);
}

size_t Mailbox::Clear(absl::FunctionRef<void(Mail&)> dropped_mail) {
  const size_t dropped = user_;
  if (queue_ != nullptr) {
    for (Entry& entry : *queue_) dropped_mail(entry.mail);
  }
  queue_.reset();
  user_ = 0;
  return dropped;
}

}  // namespace troupe
