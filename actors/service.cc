#include "actors/service.h"

#include <algorithm>
#include <deque>
#include <exception>
#include <string>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "actors/cell.h"
#include "core/base/check.h"
#include "core/base/log.h"

namespace troupe {
namespace internal {
namespace {

std::string Name(ActorRef ref) {
  return absl::StrCat(ref.reactor, "/", ref.slot & ~kServiceSlot, "/", ref.generation);
}

// The ServiceHandler that runs one ServiceActor and supervises it: the one
// place its callbacks are dispatched, its exceptions caught and its restart
// policy applied.
class ServiceActorHost final : public ServiceHandler, public ActorCell {
 public:
  ServiceActorHost(ServiceFactory make, const ServiceActorOptions& options)
      : ActorCell(options.offload), make_(std::move(make)), policy_(options.restart) {}

  void OnStart(Service& service) override {
    service_ = &service;
    Bind(service.reactor(), service.id(), nullptr, nullptr);
    StartActor();
  }

  void OnMail(Service& /*service*/, Mail mail) override {
    if (TakeSystemMail(mail)) return;
    if (actor_ == nullptr) return;  // restarting: mail is paused, so not reached
    set_current_request(mail.return_address());
    Dispatch([&](Context& ctx) { actor_->OnMail(ctx, std::move(mail)); });
    set_current_request({});
  }

  void OnStop(Service& /*service*/, CloseReason reason) override {
    NotifyWatchers(reason);
    LeaveAllGroups();
    if (actor_ == nullptr) return;
    Context ctx(*this);
    try {
      actor_->OnStop(ctx, reason);
    } catch (...) {
      TROUPE_LOG_EVERY_SECOND(kWarning, "service %s threw in OnStop", Name(self()));
    }
    actor_.reset();
  }

  // Pending work holds up no drain (services stop after the connections):
  // it is kept only so that Finish matches Add.
  void AddWork() override { ++work_; }
  void FinishWork() override {
    if (work_ > 0) --work_;
  }
  bool closing() const override { return service_->stopped(); }
  bool ended() const override { return service_->stopped(); }
  void Stop() override { service_->Stop(CloseReason::kLocalClose); }

  // The restart timer came due for incarnation `incarnation`.
  void Restart(uint32_t incarnation) {
    if (incarnation != this->incarnation() || actor_ != nullptr || service_->stopped()) return;
    StartActor();
    if (actor_ != nullptr && !service_->stopped()) service_->ResumeMail();
  }

 protected:
  void Dispatch(absl::FunctionRef<void(Context&)> fn) override {
    if (actor_ != nullptr) ActorCell::Dispatch(fn);  // none while restarting
  }

 private:
  void StartActor() {
    try {
      actor_ = make_();
    } catch (...) {
      actor_ = nullptr;
    }
    if (actor_ == nullptr) {
      TROUPE_LOG_EVERY_SECOND(kError, "service %s: its factory made no actor; stopping it",
                              Name(self()));
      service_->Stop(CloseReason::kHandlerError);
      return;
    }
    Dispatch([&](Context& ctx) { actor_->OnStart(ctx); });
  }

  // The policy decides: a fresh object after a backoff, or the end.
  void Failed(std::string_view what) override {
    if (current_request().valid()) {
      SendReply(current_request(),
                absl::InternalError(absl::StrCat("the asked actor threw: ", std::string(what))));
    }
    if (service_->stopped()) return;
    const auto now = Clock::now();
    const auto window = absl::ToChronoNanoseconds(policy_.within);
    while (!failures_.empty() && now - failures_.front() > window) failures_.pop_front();
    if (policy_.kind == RestartPolicy::Kind::kStop ||
        static_cast<int>(failures_.size()) >= policy_.max_restarts) {
      TROUPE_LOG_EVERY_SECOND(kError, "service %s threw: %s; stopping it (%s)", Name(self()),
                              std::string(what),
                              policy_.kind == RestartPolicy::Kind::kStop
                                  ? std::string("its policy is to stop")
                                  : absl::StrCat(failures_.size(), " restarts within ",
                                                 absl::FormatDuration(policy_.within)));
      service_->Stop(CloseReason::kHandlerError);
      return;
    }
    failures_.push_back(now);
    absl::Duration backoff = policy_.backoff;
    for (size_t i = 1; i < failures_.size() && backoff < policy_.max_backoff; ++i) backoff *= 2;
    backoff = std::min(backoff, policy_.max_backoff);
    TROUPE_LOG_EVERY_SECOND(kWarning, "service %s threw: %s; restart %d of %d in %s", Name(self()),
                            std::string(what), failures_.size(), policy_.max_restarts,
                            absl::FormatDuration(backoff));
    reactor().CountInLoop(&ReactorCounters::service_restarts);
    // After the throw has unwound: nothing of the old object is on the stack.
    actor_.reset();
    NewIncarnation();
    work_ = 0;
    service_->PauseMail();  // mail waits in the mailbox for the new object
    Reactor& reactor = this->reactor();
    const ActorRef ref = self();
    const uint32_t incarnation = this->incarnation();
    reactor.RunAfter(backoff, [&reactor, ref, incarnation] {
      Service* service = reactor.FindService(ref);
      if (service == nullptr) return;
      if (auto* host = dynamic_cast<ServiceActorHost*>(service->handler())) {
        host->Restart(incarnation);
      }
    });
  }

  const ServiceFactory make_;
  const RestartPolicy policy_;
  Service* service_ = nullptr;  // set by OnStart; the service outlives us
  std::unique_ptr<ServiceActor> actor_;
  std::deque<Clock::time_point> failures_;  // restarts within the window
  uint64_t work_ = 0;
};

}  // namespace
}  // namespace internal

ActorRef Context::Spawn(ServiceFactory make, const ServiceActorOptions& options) {
  return cell_.reactor().SpawnService(
      std::make_unique<internal::ServiceActorHost>(std::move(make), options), options.mailbox);
}

ActorRef Context::Spawn(ServiceFactory make) { return Spawn(std::move(make), {}); }

void Context::SpawnOn(uint32_t reactor, ServiceFactory make, const ServiceActorOptions& options,
                      absl::AnyInvocable<void(Context&, ActorRef) &&> on_spawned) {
  Reactor& here = cell_.reactor();
  Reactor& there = here.peer(reactor);  // std::out_of_range past reactor_count()
  const ActorRef self = Self();
  const uint32_t incarnation = cell_.incarnation();
  cell_.AddWork();
  // Both reactors outlive every task they run: the server joins them all.
  there.Post([&here, &there, self, incarnation, make = std::move(make), options,
              on_spawned = std::move(on_spawned)]() mutable {
    const ActorRef ref = there.SpawnService(
        std::make_unique<internal::ServiceActorHost>(std::move(make), options), options.mailbox);
    internal::Continuation next;
    next.holds_work = true;
    next.incarnation = incarnation;
    next.run = [on_spawned = std::move(on_spawned), ref](Context& ctx) mutable {
      std::move(on_spawned)(ctx, ref);
    };
    // System mail: the answer this actor asked for is never refused.
    here.SendMail(self, Mail::Of(std::move(next)), MailClass::kSystem);
  });
}

ActorRef SpawnService(Server& server, uint32_t reactor, ServiceFactory make,
                      const ServiceActorOptions& options) {
  TROUPE_CHECK(reactor < static_cast<uint32_t>(server.workers()), "SpawnService: no such reactor");
  return server.reactor(static_cast<int>(reactor))
      .SpawnService(std::make_unique<internal::ServiceActorHost>(std::move(make), options),
                    options.mailbox);
}

void Sharded::Spawn(Server& server,
                    const std::function<std::unique_ptr<ServiceActor>(uint32_t)>& make,
                    const ServiceActorOptions& options) {
  TROUPE_CHECK(refs_->empty(), "Sharded::Spawn called twice");
  for (uint32_t i = 0; i < static_cast<uint32_t>(server.workers()); ++i) {
    refs_->push_back(SpawnService(
        server, i, [make, i] { return make(i); }, options));
  }
}

ActorRef Sharded::ForKey(std::string_view key) const {
  TROUPE_CHECK(!refs_->empty(), "Sharded::ForKey before Spawn");
  return (*refs_)[absl::HashOf(key) % refs_->size()];
}

}  // namespace troupe
