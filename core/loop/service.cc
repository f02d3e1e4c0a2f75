#include "core/loop/service.h"

#include <algorithm>
#include <utility>

#include "core/base/check.h"
#include "core/base/log.h"

namespace troupe {

Service::Service(ConnectionHost& host, Reactor* owner, ConnectionId id,
                 const ServiceOptions& options, std::unique_ptr<ServiceHandler> handler)
    : host_(host), owner_(owner), id_(id), options_(options), handler_(std::move(handler)) {
  TROUPE_CHECK(handler_ != nullptr, "a Service needs a handler");
  ScheduleMailInLoop();  // OnStart runs in the first mailbox phase
}

Reactor& Service::reactor() const {
  TROUPE_CHECK(owner_ != nullptr, "this service has no Reactor (a test's own host)");
  return *owner_;
}

void Service::Stop(CloseReason reason) {
  if (stopped_) return;
  stopped_ = true;
  host_.DropWaiting(
      mailbox_, id_,
      reason == CloseReason::kMailboxOverflow ? MailDrop::kActorClosed : MailDrop::kGone);
  host_.ServiceStopped(id_, reason);
}

void Service::ResumeMail() {
  mail_paused_ = false;
  if (!stopped_ && !mailbox_.empty()) ScheduleMailInLoop();
}

std::optional<MailDrop> Service::EnqueueMailInLoop(Mail mail, MailClass mail_class) {
  const std::optional<MailDrop> dropped =
      host_.Offer(mailbox_, id_, std::move(mail), mail_class, options_.mailbox_capacity,
                  options_.mailbox_overflow);
  if (dropped == MailDrop::kActorClosed) {
    TROUPE_LOG_EVERY_SECOND(kWarning, "stopping service %d/%d: mailbox full (%d mails waiting)",
                            id_.reactor, id_.slot & ~kServiceSlot, mailbox_.size());
    Stop(CloseReason::kMailboxOverflow);
  }
  if (dropped) return dropped;
  ScheduleMailInLoop();
  return std::nullopt;
}

void Service::ScheduleMailInLoop() {
  if (in_mail_ready_) return;
  in_mail_ready_ = true;
  host_.MailReady(id_);
}

void Service::HandOverMailInLoop(size_t max) {
  in_mail_ready_ = false;
  if (stopped_) return;
  if (!started_) {
    started_ = true;
    handler_->OnStart(*this);
  }
  const size_t n = std::min(max, mailbox_.size());
  for (size_t i = 0; i < n && !mailbox_.empty() && !stopped_ && !mail_paused_; ++i) {
    Mail mail = mailbox_.Pop();
    host_.MailboxDepthChanged(-1, 0);
    ReactorCounters::Bump(host_.counters().mail_delivered);
    handler_->OnMail(*this, std::move(mail));
  }
  if (!stopped_ && !mail_paused_ && !mailbox_.empty()) ScheduleMailInLoop();
}

}  // namespace troupe
