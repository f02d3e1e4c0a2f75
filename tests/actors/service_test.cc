// Service actors, Ask/reply, supervision and watches (actors/service.h,
// actors/actor.h), through a real server on loopback: a connection actor
// turns each line a test sends into the call under test and writes what
// came back, so every answer is observed where a user would see it.
#include "actors/service.h"

#include <atomic>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "actors/actor.h"
#include "core/base/string_view_compat.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "tests/support/line_client.h"
#include "tests/support/start_server.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using testing::LineClient;
using testing::WaitFor;

ActorOptions Lines() {
  ActorOptions options;
  options.codec.kind = CodecKind::kLines;
  return options;
}

using testing::StartServer;

std::string Text(const absl::StatusOr<std::string>& answer) {
  return answer.ok() ? *answer : std::string(absl::StatusCodeToString(answer.status().code()));
}

// Requests the test services understand.
struct Echo {
  std::string text;
};
struct Count {};   // replies with the number of Counts seen (state)
struct Boom {};    // throws
struct Silent {};  // never answered
struct LateBy {    // answered after `ms` milliseconds
  int ms;
};
struct StopNow {};  // the service stops itself (ctx.Close())

class TestService final : public ServiceActor {
 public:
  explicit TestService(std::atomic<int>* starts = nullptr) : starts_(starts) {}
  void OnStart(Context& /*ctx*/) override {
    if (starts_ != nullptr) starts_->fetch_add(1);
  }
  void OnMail(Context& ctx, Mail mail) override {
    const ReturnAddress from = mail.return_address();
    if (const Echo* echo = mail.Get<Echo>()) {
      ctx.Reply(from, echo->text);
    } else if (mail.Is<Count>()) {
      ctx.Reply(from, std::to_string(++count_));
    } else if (mail.Is<Boom>()) {
      throw std::runtime_error("boom");
    } else if (const LateBy* late = mail.Get<LateBy>()) {
      const std::string text = absl::StrCat("late ", late->ms);
      ctx.After(absl::Milliseconds(late->ms), [from, text](Context& c) { c.Reply(from, text); });
    } else if (mail.Is<StopNow>()) {
      ctx.Close();
    }
  }

 private:
  std::atomic<int>* starts_;
  int count_ = 0;
};

// Each line "VERB SHARD [ARG]" asks shard SHARD and writes the answer (or
// the status code); "watch SHARD" / "unwatch SHARD" watch it and write each
// Terminated as "terminated REASON".
class Prober final : public Actor {
 public:
  Prober(Sharded shards, absl::Duration timeout) : shards_(std::move(shards)), timeout_(timeout) {}

  void OnMessage(Context& ctx, Bytes line) override {
    std::vector<std::string> words = absl::StrSplit(AsAbsl(line), ' ');
    uint32_t shard = 0;
    if (words.size() < 2 || !absl::SimpleAtoi(words[1], &shard)) {
      ctx.InOrder([](Context& c) { c.WriteFrame("bad command"); });
      return;
    }
    const ActorRef to = shard < shards_.size() ? shards_.shard(shard) : ActorRef{0, 12345, 1};
    const std::string arg = words.size() > 2 ? words[2] : "";
    const std::string& verb = words[0];
    if (verb == "echo") {
      Ask(ctx, to, Echo{arg});
    } else if (verb == "count") {
      Ask(ctx, to, Count{});
    } else if (verb == "boom") {
      Ask(ctx, to, Boom{});
    } else if (verb == "silent") {
      Ask(ctx, to, Silent{});
    } else if (verb == "late") {
      int ms = 0;
      (void)absl::SimpleAtoi(arg, &ms);
      Ask(ctx, to, LateBy{ms});
    } else if (verb == "stop") {
      ctx.Send(to, Mail::Of(StopNow{}));
      ctx.WriteFrame("sent");
    } else if (verb == "watch") {
      ctx.Watch(to);
      ctx.WriteFrame("watching");
    } else if (verb == "unwatch") {
      ctx.Unwatch(to);
      ctx.WriteFrame("unwatched");
    }
  }

  void OnMail(Context& ctx, Mail mail) override {
    if (const Terminated* t = mail.Get<Terminated>()) {
      ctx.WriteFrame(
          absl::StrCat("terminated ", t->reason ? CloseReasonName(*t->reason) : "already-gone"));
    }
  }

 private:
  template <typename Request>
  void Ask(Context& ctx, ActorRef to, Request request) {
    ctx.Ask<std::string>(
        to, std::move(request), timeout_,
        [](Context& c, absl::StatusOr<std::string> answer) { c.WriteFrame(Text(answer)); });
  }

  Sharded shards_;
  absl::Duration timeout_;
};

struct Fixture {
  explicit Fixture(int workers = 2, absl::Duration timeout = absl::Seconds(10),
                   ServiceActorOptions service_options = {}, std::atomic<int>* starts = nullptr) {
    ServerOptions options;
    options.workers = workers;
    server = StartServer(
        options,
        ActorFactory([this, timeout] { return std::make_unique<Prober>(shards, timeout); },
                     Lines()),
        [&](Server& s) {
          shards.Spawn(
              s, [starts](uint32_t) { return std::make_unique<TestService>(starts); },
              service_options);
        });
  }
  ReactorStats Total() const { return server->Stats().Total(); }
  Sharded shards;
  std::unique_ptr<Server> server;
};

TEST(ServiceTest, AsksAServiceOnEveryReactorAndKeepsItsState) {
  Fixture f;
  ASSERT_NE(f.server, nullptr);
  EXPECT_EQ(f.shards.size(), 2u);
  EXPECT_EQ(f.Total().services, 2u);
  LineClient client(f.server->address());
  // Shard 0 and shard 1: one is on the client's reactor, one is not.
  for (uint32_t shard = 0; shard < 2; ++shard) {
    ASSERT_TRUE(client.Send(absl::StrCat("echo ", shard, " hi", shard, "\n")));
    EXPECT_EQ(client.ReadLine(), absl::StrCat("hi", shard));
    ASSERT_TRUE(client.Send(absl::StrCat("count ", shard, "\ncount ", shard, "\n")));
    EXPECT_EQ(client.ReadLine(), "1");
    EXPECT_EQ(client.ReadLine(), "2");
  }
  client.Close();
  f.server->Stop();
  EXPECT_EQ(f.Total().services, 0u);  // stopped with the server
}

TEST(ServiceTest, PipelinedAsksAreAnsweredInRequestOrder) {
  Fixture f;
  ASSERT_NE(f.server, nullptr);
  LineClient client(f.server->address());
  // A slow answer first, then fast ones from both shards: the fast ones
  // wait for it.
  ASSERT_TRUE(client.Send("late 0 200\necho 1 a\necho 0 b\nlate 1 50\necho 1 c\nnonsense\n"));
  EXPECT_EQ(client.ReadLine(), "late 200");
  EXPECT_EQ(client.ReadLine(), "a");
  EXPECT_EQ(client.ReadLine(), "b");
  EXPECT_EQ(client.ReadLine(), "late 50");
  EXPECT_EQ(client.ReadLine(), "c");
  EXPECT_EQ(client.ReadLine(), "bad command");  // InOrder: after the answers before it
}

TEST(ServiceTest, AnAskTimesOutAndALateReplyIsDroppedAndCounted) {
  Fixture f(2, absl::Milliseconds(100));
  ASSERT_NE(f.server, nullptr);
  LineClient client(f.server->address());
  ASSERT_TRUE(client.Send("silent 1\n"));
  EXPECT_EQ(client.ReadLine(), "DEADLINE_EXCEEDED");
  ASSERT_TRUE(client.Send("late 1 400\n"));
  EXPECT_EQ(client.ReadLine(), "DEADLINE_EXCEEDED");
  EXPECT_TRUE(WaitFor([&] { return f.Total().ask_replies_late == 1; }));
  EXPECT_EQ(f.Total().asks_timed_out, 2u);
  // The actor goes on asking.
  ASSERT_TRUE(client.Send("echo 1 still\n"));
  EXPECT_EQ(client.ReadLine(), "still");
}

TEST(ServiceTest, AskingAGoneOrUnknownActorFailsAtOnceWithNotFound) {
  Fixture f(2, absl::Seconds(30));  // far beyond the test's wait: a bounce answers
  ASSERT_NE(f.server, nullptr);
  LineClient client(f.server->address());
  ASSERT_TRUE(client.Send("stop 0\nstop 1\n"));
  EXPECT_EQ(client.ReadLine(), "sent");
  EXPECT_EQ(client.ReadLine(), "sent");
  ASSERT_TRUE(WaitFor([&] { return f.Total().services == 0; }));
  ASSERT_TRUE(client.Send("echo 0 x\necho 1 y\necho 7 z\n"));  // 7: no such shard
  EXPECT_EQ(client.ReadLine(absl::Seconds(5)), "NOT_FOUND");
  EXPECT_EQ(client.ReadLine(absl::Seconds(5)), "NOT_FOUND");
  EXPECT_EQ(client.ReadLine(absl::Seconds(5)), "NOT_FOUND");
  EXPECT_GE(f.Total().mail_bounced, 1u);
}

TEST(ServiceTest, AFullMailboxRefusesARequestWithResourceExhausted) {
  ServiceActorOptions options;
  options.mailbox.mailbox_capacity = 0;  // every request is refused
  Fixture f(2, absl::Seconds(30), options);
  ASSERT_NE(f.server, nullptr);
  LineClient client(f.server->address());
  ASSERT_TRUE(client.Send("echo 0 x\necho 1 y\n"));
  EXPECT_EQ(client.ReadLine(absl::Seconds(5)), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(client.ReadLine(absl::Seconds(5)), "RESOURCE_EXHAUSTED");
}

TEST(SupervisionTest, AThrowingServiceIsRestartedFreshAndKeepsItsRef) {
  std::atomic<int> starts{0};
  Fixture f(2, absl::Seconds(10), {}, &starts);
  ASSERT_NE(f.server, nullptr);
  ASSERT_TRUE(WaitFor([&] { return starts.load() == 2; }));
  LineClient client(f.server->address());
  ASSERT_TRUE(client.Send("count 1\ncount 1\n"));
  EXPECT_EQ(client.ReadLine(), "1");
  EXPECT_EQ(client.ReadLine(), "2");
  // The request that made it throw is answered with an error; requests
  // sent during the backoff wait for the new object, whose state is fresh.
  ASSERT_TRUE(client.Send("boom 1\ncount 1\n"));
  EXPECT_EQ(client.ReadLine(), "INTERNAL");
  EXPECT_EQ(client.ReadLine(), "1");
  EXPECT_EQ(starts.load(), 3);
  EXPECT_EQ(f.Total().service_restarts, 1u);
  EXPECT_EQ(f.Total().services, 2u);
}

TEST(SupervisionTest, PastMaxRestartsWithinTheWindowTheServiceStopsAndWatchersHear) {
  ServiceActorOptions options;
  options.restart.max_restarts = 2;
  options.restart.within = absl::Seconds(60);
  options.restart.backoff = absl::Milliseconds(1);
  Fixture f(2, absl::Seconds(10), options);
  ASSERT_NE(f.server, nullptr);
  LineClient client(f.server->address());
  ASSERT_TRUE(client.Send("watch 1\n"));
  EXPECT_EQ(client.ReadLine(), "watching");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client.Send("boom 1\n"));
    EXPECT_EQ(client.ReadLine(), "INTERNAL") << "failure " << i;
  }
  // The third failure in the window: stopped for good, and the watcher hears why.
  EXPECT_EQ(client.ReadLine(), "terminated handler_error");
  EXPECT_EQ(f.Total().service_restarts, 2u);
  EXPECT_EQ(f.Total().services, 1u);
  ASSERT_TRUE(client.Send("echo 1 x\n"));
  EXPECT_EQ(client.ReadLine(), "NOT_FOUND");
}

TEST(SupervisionTest, TheStopPolicyStopsAtTheFirstFailure) {
  ServiceActorOptions options;
  options.restart = RestartPolicy::Stop();
  Fixture f(1, absl::Seconds(10), options);
  ASSERT_NE(f.server, nullptr);
  LineClient client(f.server->address());
  ASSERT_TRUE(client.Send("boom 0\n"));
  EXPECT_EQ(client.ReadLine(), "INTERNAL");
  ASSERT_TRUE(WaitFor([&] { return f.Total().services == 0; }));
  EXPECT_EQ(f.Total().service_restarts, 0u);
}

TEST(WatchTest, AWatcherHearsOnceWhyAServiceEnded) {
  Fixture f;
  ASSERT_NE(f.server, nullptr);
  LineClient client(f.server->address());
  ASSERT_TRUE(client.Send("watch 0\nwatch 1\nunwatch 1\n"));
  EXPECT_EQ(client.ReadLine(), "watching");
  EXPECT_EQ(client.ReadLine(), "watching");
  EXPECT_EQ(client.ReadLine(), "unwatched");
  ASSERT_TRUE(client.Send("stop 0\nstop 1\n"));
  EXPECT_EQ(client.ReadLine(), "sent");
  EXPECT_EQ(client.ReadLine(), "sent");
  EXPECT_EQ(client.ReadLine(), "terminated local_close");  // shard 0 only
  ASSERT_TRUE(WaitFor([&] { return f.Total().services == 0; }));
  // Watching what has already ended answers at once, reason unknown.
  // (Shard 0: its one Terminated has been read, so none is in flight.)
  ASSERT_TRUE(client.Send("watch 0\n"));
  EXPECT_EQ(client.ReadLine(), "watching");
  EXPECT_EQ(client.ReadLine(), "terminated already-gone");
  // Nothing more: the unwatched shard 1's end was not reported.
  ASSERT_TRUE(client.Send("echo 0 x\n"));
  EXPECT_EQ(client.ReadLine(), "NOT_FOUND");
}

TEST(WatchTest, AWatcherThatEndsIsForgottenByWhatItWatched) {
  Fixture f;
  ASSERT_NE(f.server, nullptr);
  auto gone = [&] {
    return f.Total().mail_dropped_by_reason[static_cast<size_t>(MailDrop::kGone)];
  };
  for (int i = 0; i < 4; ++i) {  // short-lived watchers of a long-lived service
    LineClient client(f.server->address());
    ASSERT_TRUE(client.Send("watch 0\n"));
    EXPECT_EQ(client.ReadLine(), "watching");
    client.Close();
  }
  ASSERT_TRUE(WaitFor([&] { return f.Total().open == 0; }));
  const uint64_t gone_before = gone();
  LineClient stopper(f.server->address());
  ASSERT_TRUE(stopper.Send("stop 0\n"));
  EXPECT_EQ(stopper.ReadLine(), "sent");
  ASSERT_TRUE(WaitFor([&] { return f.Total().services == 1; }));
  // Its end notified nobody: no Terminated went to the four gone watchers.
  ASSERT_TRUE(stopper.Send("echo 1 x\n"));
  EXPECT_EQ(stopper.ReadLine(), "x");
  EXPECT_EQ(gone(), gone_before);
}

// A service that watches every connection that asks it to, and counts the
// Terminated it gets by reason. It answers after the watch request is sent:
// per-sender order puts the request at the connection before the answer.
struct ConnectionWatcher final : public ServiceActor {
  explicit ConnectionWatcher(std::atomic<int>& closed) : closed_(closed) {}
  void OnMail(Context& ctx, Mail mail) override {
    if (const ActorRef* ref = mail.Get<ActorRef>()) {
      ctx.Watch(*ref);
      ctx.Reply(mail.return_address(), std::string("watched"));
    }
    if (const Terminated* t = mail.Get<Terminated>()) {
      if (t->reason == CloseReason::kPeerClosed) closed_.fetch_add(1);
    }
  }
  std::atomic<int>& closed_;
};

TEST(WatchTest, AServiceWatchesAConnectionActor) {
  std::atomic<int> closed{0};
  ActorRef watcher;
  class Hello final : public Actor {
   public:
    explicit Hello(ActorRef* watcher) : watcher_(watcher) {}
    void OnOpen(Context& ctx) override {
      ctx.Ask<std::string>(
          *watcher_, ctx.Self(), absl::Seconds(10),
          [](Context& c, absl::StatusOr<std::string> r) { c.WriteFrame(Text(r)); });
    }
    void OnMessage(Context& ctx, Bytes line) override { ctx.WriteFrame(line); }

   private:
    ActorRef* watcher_;
  };
  ServerOptions options;
  options.workers = 2;
  auto server = StartServer(
      options, ActorFactory([&] { return std::make_unique<Hello>(&watcher); }, Lines()),
      [&](Server& s) {
        watcher = SpawnService(s, 1, [&] { return std::make_unique<ConnectionWatcher>(closed); });
      });
  ASSERT_NE(server, nullptr);
  for (int i = 0; i < 4; ++i) {  // over both reactors
    LineClient client(server->address());
    EXPECT_EQ(client.ReadLine(), "watched");  // the watch is in by now
    client.Close();
  }
  EXPECT_TRUE(WaitFor([&] { return closed.load() == 4; }));
}

TEST(ServiceTest, AnActorSpawnsAServiceAtRunTimeAndServerSendMailReachesIt) {
  std::atomic<int> got{0};
  struct Sink final : public ServiceActor {
    explicit Sink(std::atomic<int>& n) : n_(n) {}
    void OnMail(Context& /*ctx*/, Mail mail) override {
      if (mail.Is<int>()) n_.fetch_add(*mail.Get<int>());
    }
    std::atomic<int>& n_;
  };
  ActorRef spawned;
  std::atomic<bool> ready{false};
  class Spawner final : public Actor {
   public:
    Spawner(std::atomic<int>& n, ActorRef& out, std::atomic<bool>& ready)
        : n_(n), out_(out), ready_(ready) {}
    void OnMessage(Context& ctx, Bytes /*line*/) override {
      const ActorRef ref = ctx.Spawn([&n = n_] { return std::make_unique<Sink>(n); });
      EXPECT_TRUE(ref.is_service());
      EXPECT_EQ(ref.reactor, ctx.reactor_index());
      ctx.Send(ref, Mail::Of(1));
      out_ = ref;
      ready_.store(true);
      ctx.WriteFrame("spawned");
    }

   private:
    std::atomic<int>& n_;
    ActorRef& out_;
    std::atomic<bool>& ready_;
  };
  ServerOptions options;
  options.workers = 2;
  auto server = StartServer(
      options,
      ActorFactory([&] { return std::make_unique<Spawner>(got, spawned, ready); }, Lines()));
  ASSERT_NE(server, nullptr);
  LineClient client(server->address());
  ASSERT_TRUE(client.Send("go\n"));
  EXPECT_EQ(client.ReadLine(), "spawned");
  ASSERT_TRUE(ready.load());
  EXPECT_TRUE(server->SendMail(spawned, Mail::Of(10)));  // from outside any actor
  EXPECT_TRUE(WaitFor([&] { return got.load() == 11; }));
}

TEST(ServiceTest, SpawnOnPutsAServiceOnTheChosenReactor) {
  class Remote final : public Actor {
   public:
    void OnMessage(Context& ctx, Bytes /*line*/) override {
      const uint32_t there = 1 - ctx.reactor_index();
      ctx.SpawnOn(
          there, [] { return std::make_unique<TestService>(); }, {},
          [there](Context& c, ActorRef ref) {
            EXPECT_EQ(ref.reactor, there);
            c.Ask<std::string>(ref, Echo{"from afar"}, absl::Seconds(10),
                               [](Context& back, absl::StatusOr<std::string> answer) {
                                 back.WriteFrame(Text(answer));
                               });
          });
    }
  };
  ServerOptions options;
  options.workers = 2;
  auto server =
      StartServer(options, ActorFactory([] { return std::make_unique<Remote>(); }, Lines()));
  ASSERT_NE(server, nullptr);
  LineClient client(server->address());
  ASSERT_TRUE(client.Send("go\n"));
  EXPECT_EQ(client.ReadLine(), "from afar");
  EXPECT_EQ(server->Stats().Total().services, 1u);
}

TEST(ServiceTest, TheDrainAnswersAConnectionsLastAskBeforeServicesStop) {
  Fixture f;
  ASSERT_NE(f.server, nullptr);
  LineClient client(f.server->address());
  ASSERT_TRUE(client.Send("late 1 300\n"));
  // Give the request time to reach the service, then drain.
  ASSERT_TRUE(WaitFor([&] { return f.Total().mail_delivered >= 1; }));
  std::thread stopper([&] { f.server->Stop(); });
  EXPECT_EQ(client.ReadLine(), "late 300");
  EXPECT_TRUE(client.WaitForEof());
  client.Close();
  stopper.join();
  EXPECT_EQ(f.Total().services, 0u);
  EXPECT_EQ(f.Total().closed_by_reason[static_cast<size_t>(CloseReason::kShutdown)], 0u);
}

TEST(StallTest, ATurnLongerThanTheThresholdIsCounted) {
  class Sleeper final : public Actor {
   public:
    void OnMessage(Context& ctx, Bytes line) override {
      std::this_thread::sleep_for(std::chrono::milliseconds(120));  // blocks the loop
      ctx.WriteFrame(line);
    }
  };
  ServerOptions options;
  options.workers = 1;
  options.stall_threshold = absl::Milliseconds(50);
  auto server =
      StartServer(options, ActorFactory([] { return std::make_unique<Sleeper>(); }, Lines()));
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->Stats().Total().stalls, 0u);
  LineClient client(server->address());
  ASSERT_TRUE(client.Send("zzz\n"));
  EXPECT_EQ(client.ReadLine(), "zzz");
  EXPECT_TRUE(WaitFor([&] { return server->Stats().Total().stalls >= 1; }));
}

}  // namespace
}  // namespace troupe
