// The actor layer's own paths, through a running two-reactor Server, driven
// by a service actor on reactor 0 (so the figures are actor to actor, not
// the benchmark thread's wake-ups):
//   BM_AskRoundTrip   one Ask to a service on reactor 1 and its reply,
//                     one at a time (each reply sends the next Ask)
//   BM_SendBurst/B    ctx.Send of owned mail (Mail::Of, held in the Mail)
//                     from reactor 0 to a service on reactor 1, in bursts of
//                     B: the sink acknowledges each burst's end, and the
//                     driver sends the next burst on the acknowledgement
//   BM_ShareBurst/B   the same with shared mail (Mail::Share of one value)
//   BM_SpawnStop      spawn a service on reactor 0, which stops itself in
//                     OnStart; the spawner hears Terminated, spawns the next
// Ask and spawn report ns and heap allocations per operation; the bursts
// report ns per mail and allocations per mail (the acknowledgements are
// overhead, not mail). Allocations are counted by this binary's replacement
// of operator new (tests/support/counting_new.h: one relaxed atomic load per
// allocation while not counting, an add while counting; it is replaced for
// the whole binary), on every thread.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

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
  int count;  // operations; for the bursts: bursts
  absl::Notification* done;
};
struct Ping {};
struct Note {
  uint64_t n = 0;
};
struct BurstEnd {  // after a burst, from the same sender: so it comes last
  ActorRef ack_to;
};
struct Ack {};

class Responder final : public ServiceActor {
 public:
  void OnMail(Context& ctx, Mail mail) override {
    if (mail.Is<Ping>()) ctx.Reply(mail.return_address(), 1);
  }
};

// Counts mail; acknowledges a burst's end (per-sender order: every Note of
// the burst is in by then).
class Sink final : public ServiceActor {
 public:
  explicit Sink(uint64_t& received) : received_(received) {}
  void OnMail(Context& ctx, Mail mail) override {
    if (mail.Is<Note>()) ++received_;
    if (const BurstEnd* end = mail.Get<BurstEnd>()) ctx.Send(end->ack_to, Mail::Of(Ack{}));
  }

 private:
  uint64_t& received_;  // read by the benchmark after the run's Notify
};

class StopAtStart final : public ServiceActor {
 public:
  void OnStart(Context& ctx) override { ctx.Close(); }
  void OnMail(Context& /*ctx*/, Mail /*mail*/) override {}
};

enum class Mode { kAsk, kSend, kShare, kSpawn };

class Driver final : public ServiceActor {
 public:
  Driver(Mode mode, ActorRef target, int burst)
      : mode_(mode), target_(target), burst_(burst), shared_(std::make_shared<const Note>()) {}
  void OnMail(Context& ctx, Mail mail) override {
    if (const Run* run = mail.Get<Run>()) {
      left_ = run->count;
      done_ = run->done;
      Next(ctx);
    } else if (mail.Is<Terminated>() || mail.Is<Ack>()) {
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
      case Mode::kShare:
        for (int i = 0; i < burst_; ++i) {
          ctx.Send(target_, mode_ == Mode::kSend ? Mail::Of(Note{sent_++}) : Mail::Share(shared_));
        }
        ctx.Send(target_, Mail::Of(BurstEnd{ctx.Self()}));
        break;
    }
  }

  const Mode mode_;
  const ActorRef target_;
  const int burst_;  // mails per burst
  const std::shared_ptr<const Note> shared_;
  uint64_t sent_ = 0;
  int left_ = 0;
  absl::Notification* done_ = nullptr;
};

class Dummy final : public Actor {
 public:
  void OnMessage(Context& /*ctx*/, Bytes /*b*/) override {}
};

// `per_iteration`: operations, or for the bursts, bursts of `burst` mails.
void RunActorBench(benchmark::State& state, Mode mode, int per_iteration, int burst = 0) {
  ServerOptions options;
  options.address = Address::Parse("127.0.0.1:0").value();
  options.workers = 2;
  auto server =
      Server::Create(options, ActorFactory([] { return std::make_unique<Dummy>(); })).value();
  const bool bursts = mode == Mode::kSend || mode == Mode::kShare;
  uint64_t received = 0;
  ActorRef target;
  if (mode == Mode::kAsk) {
    target = SpawnService(*server, 1, [] { return std::make_unique<Responder>(); });
  } else if (bursts) {
    target = SpawnService(*server, 1, [&] { return std::make_unique<Sink>(received); });
  }
  const ActorRef driver =
      SpawnService(*server, 0, [&] { return std::make_unique<Driver>(mode, target, burst); });
  server->Start();
  // Operations (for the bursts: mails) per run.
  const uint64_t per_run =
      static_cast<uint64_t>(per_iteration) * static_cast<uint64_t>(bursts ? burst : 1);
  uint64_t sent = 0;
  auto run_once = [&] {
    absl::Notification done;
    server->SendMail(driver, Mail::Of(Run{per_iteration, &done}));
    done.WaitForNotification();
    sent += per_run;
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
  if (bursts && received != sent) state.SkipWithError("the sink did not get every mail");
  const char* per = bursts ? "mail" : "op";
  state.counters[std::string("ns_per_") + per] = benchmark::Counter(
      static_cast<double>(sent), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters[std::string("allocs_per_") + per] =
      static_cast<double>(allocations) / static_cast<double>(sent > 0 ? sent : 1);
}

void BM_AskRoundTrip(benchmark::State& state) { RunActorBench(state, Mode::kAsk, 1000); }
// 16 bursts of state.range(0) mails per iteration.
void BM_SendBurst(benchmark::State& state) {
  RunActorBench(state, Mode::kSend, 16, static_cast<int>(state.range(0)));
}
void BM_ShareBurst(benchmark::State& state) {
  RunActorBench(state, Mode::kShare, 16, static_cast<int>(state.range(0)));
}
void BM_SpawnStop(benchmark::State& state) { RunActorBench(state, Mode::kSpawn, 1000); }
BENCHMARK(BM_AskRoundTrip)->UseRealTime();
BENCHMARK(BM_SendBurst)->Arg(64)->Arg(1000)->UseRealTime();
BENCHMARK(BM_ShareBurst)->Arg(64)->Arg(1000)->UseRealTime();
BENCHMARK(BM_SpawnStop)->UseRealTime();

}  // namespace
}  // namespace troupe
