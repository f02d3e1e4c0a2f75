// ServiceActor: an actor with no socket. State that lives on a reactor (a
// shard of a store, a registry, a rate limiter) is a service actor that
// others Send to and Ask (actors/actor.h), instead of a lambda posted to a
// reactor. It has what a connection actor has except a peer: a bounded
// mailbox, timers, Offload, Ask, Watch, groups, and an ActorRef of the same
// kind, so Send works the same to both.
//
//   class Counter final : public troupe::ServiceActor {
//    public:
//     void OnMail(troupe::Context& ctx, troupe::Mail mail) override {
//       if (mail.Is<Increment>()) ctx.Reply(mail.return_address(), ++count_);
//     }
//    private:
//     uint64_t count_ = 0;
//   };
//
//   troupe::Sharded counters;                      // one per reactor
//   auto server = troupe::Server::Create(options, troupe::ActorFactory(
//       [counters] { return std::make_unique<Session>(counters); })).value();
//   counters.Spawn(*server, [](uint32_t) { return std::make_unique<Counter>(); });
//   server->Start();
//   // in a Session: ctx.Ask<uint64_t>(counters.ForKey(key), Increment{}, ...);
//
// Life: OnStart (first, in the reactor's mailbox phase) → OnMail, one at a
// time → OnStop (last). Server::Stop() stops service actors after every
// connection actor of the server has drained, so a connection's last
// request still gets its answer.
//
// Supervision (after Erlang/OTP and Pekko): an exception escaping a
// callback (or asynchronous work) fails the actor, and its RestartPolicy
// decides. kRestart: the failed object is destroyed (no OnStop: its state is
// suspect) and, after a backoff, a fresh one from the factory gets OnStart
// and the mail that waited meanwhile; the ref stays the same, so others
// notice nothing but the lost state. More than max_restarts failures within
// `within`, or kStop: the actor stops (kHandlerError) and its watchers get
// Terminated. A request being handled when the handler threw is answered
// with an Internal error. Restarts are logged and counted
// (troupe_service_restarts_total).
//
// Thread safety: loop-affine (owning reactor). The factory may run on any
// reactor thread. Sharded: copy freely; Spawn before Server::Start(), read
// only after.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "actors/actor.h"
#include "core/loop/service.h"
#include "core/server.h"

namespace troupe {

class ServiceActor {
 public:
  virtual ~ServiceActor() = default;
  virtual void OnStart(Context& /*ctx*/) {}
  virtual void OnMail(Context& ctx, Mail mail) = 0;
  // The last call; kShutdown when the server stopped, kLocalClose after
  // ctx.Close(), kHandlerError when the restart policy gave up.
  virtual void OnStop(Context& /*ctx*/, CloseReason /*reason*/) {}
};

struct RestartPolicy {
  enum class Kind : uint8_t { kRestart, kStop };
  Kind kind = Kind::kRestart;
  // At most this many restarts within `within`; one more failure stops it.
  int max_restarts = 3;
  absl::Duration within = absl::Seconds(10);
  // The wait before the first restart, doubling with each failure in the
  // window, up to max_backoff.
  absl::Duration backoff = absl::Milliseconds(10);
  absl::Duration max_backoff = absl::Seconds(1);

  static RestartPolicy Stop() { return RestartPolicy{Kind::kStop}; }
};

struct ServiceActorOptions {
  ServiceOptions mailbox;  // capacity and overflow policy
  RestartPolicy restart;
  // Where Context::Offload runs work; nullptr: OffloadPool::Default().
  OffloadPool* offload = nullptr;
};

using ServiceFactory = std::function<std::unique_ptr<ServiceActor>()>;

// Spawns a service actor on reactor `reactor` of `server`, before
// server.Start() (from the thread that created it); returns its ref. From an
// actor, use Context::Spawn.
ActorRef SpawnService(Server& server, uint32_t reactor, ServiceFactory make,
                      const ServiceActorOptions& options = {});

// One service actor per reactor (seastar's sharded<T>), addressed by index
// or by key. Copies share the refs; they are filled in by Spawn.
class Sharded {
 public:
  Sharded() : refs_(std::make_shared<std::vector<ActorRef>>()) {}

  // Before server.Start(): spawns shard i on reactor i, for every reactor,
  // with make(i).
  void Spawn(Server& server, const std::function<std::unique_ptr<ServiceActor>(uint32_t)>& make,
             const ServiceActorOptions& options = {});

  uint32_t size() const { return static_cast<uint32_t>(refs_->size()); }
  ActorRef shard(uint32_t index) const { return refs_->at(index); }
  // The shard that owns `key`: a hash of it, modulo size(). Requires size() > 0.
  ActorRef ForKey(std::string_view key) const;

 private:
  std::shared_ptr<std::vector<ActorRef>> refs_;
};

}  // namespace troupe
