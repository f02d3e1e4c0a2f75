// The actor layer's own paths, through a running two-reactor Server, driven
// by a service actor on reactor 0 (so the figures are actor to actor, not
// the benchmark thread's wake-ups):
//   BM_AskRoundTrip   one Ask to a service on reactor 1 and its reply,
//                     one at a time (each reply sends the next Ask)
//   BM_SendBurst      mail from reactor 0 to a service on reactor 1, in
//                     bursts of 1,000; the sink counts them
//   BM_SpawnStop      spawn a service on reactor 0, which stops itself in
//                     OnStart; the spawner hears Terminated, spawns the next
// Each reports ns per operation and heap allocations per operation, counted
// by this binary's replacement of operator new (tests/support/counting_new.h:
// one relaxed atomic load per allocation while not counting, an add while
// counting; it is replaced for the whole binary).
#include <atomic>
#include <memory>

#include "absl/synchronization/notification.h"
#include "actors/actor.h"
#include "actors/service.h"
#include "benchmark/benchmark.h"
#include "core/server.h"
#include "tests/support/counting_new.h"  // replaces operator new/delete

namespace troupe {
namespace {

// What the driver is told to do, from the benchmark thread.
struct Run {
  int count;
  absl::Notification* done;
};
struct Ping {};
struct Note {};
struct Flush {  // after a burst, from the same sender: so it comes last
  absl::Notification* done;
};

class Responder final : public ServiceActor {
 public:
  void OnMail(Context& ctx, Mail mail) override {
    if (mail.Is<Ping>()) ctx.Reply(mail.return_address(), 1);
  }
};

// Counts mail; says when a burst's Flush arrives (per-sender order: every
// Note of the burst is in by then).
class Sink final : public ServiceActor {
 public:
  explicit Sink(uint64_t& received) : received_(received) {}
  void OnMail(Context& /*ctx*/, Mail mail) override {
    if (mail.Is<Note>()) ++received_;
    if (const Flush* flush = mail.Get<Flush>()) flush->done->Notify();
  }

 private:
  uint64_t& received_;  // read by the benchmark after Notify
};

class StopAtStart final : public ServiceActor {
 public:
  void OnStart(Context& ctx) override { ctx.Close(); }
  void OnMail(Context& /*ctx*/, Mail /*mail*/) override {}
};

enum class Mode { kAsk, kSend, kSpawn };

class Driver final : public ServiceActor {
 public:
  Driver(Mode mode, ActorRef target) : mode_(mode), target_(target) {}
  void OnMail(Context& ctx, Mail mail) override {
    if (const Run* run = mail.Get<Run>()) {
      left_ = run->count;
      done_ = run->done;
      Next(ctx);
    } else if (mail.Is<Terminated>()) {
      Next(ctx);
    }
  }

 private:
  void Next(Context& ctx) {
    if (left_ == 0) {
      done_->Notify();
      return;
    }
    --left_;
    switch (mode_) {
      case Mode::kAsk:
        ctx.Ask<int>(target_, Ping{}, absl::Seconds(10),
                     [this](Context& c, absl::StatusOr<int>) { Next(c); });
        break;
      case Mode::kSpawn:
        ctx.Watch(ctx.Spawn([] { return std::make_unique<StopAtStart>(); }));
        break;
      case Mode::kSend:
        for (; left_ >= 0; --left_) ctx.Send(target_, Mail::Of(Note{}));
        left_ = 0;
        ctx.Send(target_, Mail::Of(Flush{done_}));
        break;
    }
  }

  const Mode mode_;
  const ActorRef target_;
  int left_ = 0;
  absl::Notification* done_ = nullptr;
};

class Dummy final : public Actor {
 public:
  void OnMessage(Context& /*ctx*/, Bytes /*b*/) override {}
};

void RunActorBench(benchmark::State& state, Mode mode, int per_iteration) {
  ServerOptions options;
  options.address = Address::Parse("127.0.0.1:0").value();
  options.workers = 2;
  auto server =
      Server::Create(options, ActorFactory([] { return std::make_unique<Dummy>(); })).value();
  uint64_t received = 0;
  ActorRef target;
  if (mode == Mode::kAsk) {
    target = SpawnService(*server, 1, [] { return std::make_unique<Responder>(); });
  } else if (mode == Mode::kSend) {
    target = SpawnService(*server, 1, [&] { return std::make_unique<Sink>(received); });
  }
  const ActorRef driver =
      SpawnService(*server, 0, [&] { return std::make_unique<Driver>(mode, target); });
  server->Start();
  uint64_t sent = 0;
  auto run_once = [&] {
    absl::Notification done;
    server->SendMail(driver, Mail::Of(Run{per_iteration, &done}));
    done.WaitForNotification();
    sent += static_cast<uint64_t>(per_iteration);
  };
  run_once();  // warm: mailboxes, tables and queues reach their steady size
  sent = 0;
  received = 0;
  testing::CountAllocations(true);
  const uint64_t allocations_before = testing::Allocations();
  for (auto _ : state) run_once();
  const uint64_t allocations = testing::Allocations() - allocations_before;
  testing::CountAllocations(false);
  server->StopNow();
  if (mode == Mode::kSend && received != sent) {
    state.SkipWithError("the sink did not get every mail");
  }
  state.counters["ns_per_op"] = benchmark::Counter(
      static_cast<double>(sent), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["allocs_per_op"] =
      static_cast<double>(allocations) / static_cast<double>(sent > 0 ? sent : 1);
}

void BM_AskRoundTrip(benchmark::State& state) { RunActorBench(state, Mode::kAsk, 1000); }
void BM_SendBurst(benchmark::State& state) { RunActorBench(state, Mode::kSend, 1000); }
void BM_SpawnStop(benchmark::State& state) { RunActorBench(state, Mode::kSpawn, 1000); }
BENCHMARK(BM_AskRoundTrip)->UseRealTime();
BENCHMARK(BM_SendBurst)->UseRealTime();
BENCHMARK(BM_SpawnStop)->UseRealTime();

}  // namespace
}  // namespace troupe
