// Service: a reactor's table entry with no socket. It has what a connection
// has for mail (an id of the same kind, a bounded mailbox with its overflow
// policy, hand-over in the mailbox phase) and nothing for bytes. The actor
// layer runs service actors on it (actors/service.h); core only routes mail.
//
//   ConnectionId id = reactor.SpawnService(std::make_unique<MyHandler>(), {});
//   reactor.SendMail(id, Mail::Of(42));   // from any thread, like a connection
//
// Life: spawned → OnStart (in the reactor's mailbox phase, before any mail)
// → OnMail, one at a time → Stop(reason) → OnStop at the end of that turn
// (the reap), after which the id names nothing. Mail waiting at Stop is
// dropped, counted, and its requests bounced (core/loop/mail.h). A reactor
// stops its services when Run() ends: after a drain, once every reactor of
// the server has closed its connections, so a connection's last request to
// a service still gets its answer. (Past the drain deadline, or at
// StopNow(), reactors leave without waiting for each other, and requests
// still in an inbox then are neither answered nor bounced.)
//
// PauseMail()/ResumeMail(): the handler may hold its mail back (a restart's
// backoff); it waits in the mailbox, still bounded by the capacity.
//
// Thread safety: loop-affine (owning reactor).
// Ownership: the reactor's service table owns each Service; handlers get
// references valid until OnStop returns.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>

#include "core/loop/close_reason.h"
#include "core/loop/connection_host.h"
#include "core/loop/connection_id.h"
#include "core/loop/mail.h"
#include "core/loop/mailbox.h"

namespace troupe {

class Reactor;
class Service;

struct ServiceOptions {
  // User mail waiting beyond this meets the policy (core/loop/mailbox.h).
  // 1,024, as for a connection's actor.
  size_t mailbox_capacity = 1024;
  MailboxOverflow mailbox_overflow = MailboxOverflow::kDropNewest;
};

// The callbacks a service drives, all on its reactor, one at a time.
class ServiceHandler {
 public:
  virtual ~ServiceHandler() = default;
  virtual void OnStart(Service& /*service*/) {}
  virtual void OnMail(Service& service, Mail mail) = 0;
  // The last call; the service is gone when it returns.
  virtual void OnStop(Service& /*service*/, CloseReason /*reason*/) {}
};

class Service {
 public:
  Service(ConnectionHost& host, Reactor* owner, ConnectionId id, const ServiceOptions& options,
          std::unique_ptr<ServiceHandler> handler);
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  ConnectionId id() const { return id_; }
  // The owning reactor, for handlers (timers, mail); may be null in a test.
  Reactor& reactor() const;
  bool stopped() const { return stopped_; }
  ServiceHandler* handler() const { return handler_.get(); }

  // Stops the service: waiting mail is dropped (counted, bounced); OnStop
  // runs at the end of the turn. Idempotent.
  void Stop(CloseReason reason);
  void PauseMail() { mail_paused_ = true; }
  void ResumeMail();

  // Loop entry points, called by the owning reactor only.
  // Queues mail under the mailbox policy; returns why it was dropped, if it was.
  std::optional<MailDrop> EnqueueMailInLoop(Mail mail, MailClass mail_class);
  // Runs OnStart first if it has not run; then hands over at most `max` of
  // the mails waiting now.
  void HandOverMailInLoop(size_t max);

 private:
  void ScheduleMailInLoop();

  ConnectionHost& host_;
  Reactor* const owner_;
  const ConnectionId id_;
  const ServiceOptions options_;
  std::unique_ptr<ServiceHandler> handler_;
  Mailbox mailbox_;
  bool started_ = false;
  bool stopped_ = false;
  bool mail_paused_ = false;
  bool in_mail_ready_ = false;
};

}  // namespace troupe
