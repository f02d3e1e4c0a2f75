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

Mailbox::PushResult Mailbox::Push(Mail&& mail, MailClass mail_class, size_t capacity,
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
        // The first user entry goes; the system entries before it (owed
        // replies, usually none) move one slot toward the tail and the head
        // advances, so a flood costs O(1) per mail, not a shift of the ring.
        for (uint32_t i = 0; i < size_; ++i) {
          if (At(i).mail_class != MailClass::kUser) continue;
          if (evicted != nullptr) *evicted = std::move(At(i).mail);
          for (uint32_t j = i; j > 0; --j) At(j) = std::move(At(j - 1));
          At(0).mail = Mail();
          head_ = (head_ + 1) & (capacity_ - 1);
          --size_;
          --user_;
          break;
        }
        result = PushResult::kEvictedOldest;
        break;
      }
    }
  }
  if (size_ == capacity_) Grow();
  Entry& entry = At(size_);
  entry.mail = std::move(mail);
  entry.mail_class = mail_class;
  ++size_;
  if (mail_class == MailClass::kUser) ++user_;
  return result;
}

void Mailbox::Grow() {
  // 8 entries (768 bytes) to begin with: most actors see a few mails at a
  // time; a burst doubles it a few times, once.
  constexpr uint32_t kFirstCapacity = 8;
  TROUPE_CHECK(capacity_ < (uint32_t{1} << 31), "Mailbox ring too large");
  const uint32_t capacity = capacity_ == 0 ? kFirstCapacity : capacity_ * 2;
  auto slots = std::make_unique<Entry[]>(capacity);
  for (uint32_t i = 0; i < size_; ++i) slots[i] = std::move(At(i));
  slots_ = std::move(slots);
  capacity_ = capacity;
  head_ = 0;
}

Mail Mailbox::Pop() {
  TROUPE_CHECK(!empty(), "Mailbox::Pop on an empty mailbox");
  Entry& entry = At(0);
  Mail mail = std::move(entry.mail);
  if (entry.mail_class == MailClass::kUser) --user_;
  --size_;
  // Emptied: start again at the first slot, so a mailbox that holds a few
  // mails at a time keeps using the same (cached) slots; and a ring a burst
  // grew past kKeptCapacity is freed, so an idle actor keeps no large one.
  head_ = size_ == 0 ? 0 : (head_ + 1) & (capacity_ - 1);
  if (size_ == 0 && capacity_ > kKeptCapacity) {
    slots_.reset();
    capacity_ = 0;
  }
  return mail;
}

size_t Mailbox::Clear(absl::FunctionRef<void(Mail&)> dropped_mail) {
  const size_t dropped = user_;
  for (uint32_t i = 0; i < size_; ++i) dropped_mail(At(i).mail);
  slots_.reset();
  capacity_ = 0;
  head_ = 0;
  size_ = 0;
  user_ = 0;
  return dropped;
}

}  // namespace troupe
