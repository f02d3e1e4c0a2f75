// The actor layer's limits and guarantees: bounded mailboxes with their
// overflow policies, refs that name nothing, Offload results in submission
// order, the drain waiting for owed replies, and codec limits past 16 MiB.
// In-process servers on 127.0.0.1, real sockets.
#include <atomic>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "actors/actor.h"
#include "actors/builtin.h"
#include "actors/service.h"
#include "core/base/string_view_compat.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "tests/support/line_client.h"
#include "tests/support/start_server.h"
#include "tests/support/sync.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using testing::LineClient;
using testing::WaitFor;

// Releases held offload work when a test ends early, so that the pool's
// destructor can join its worker instead of hanging. Declare it after the
// notification and the pool, before the server.
struct ReleaseOnExit {
  testing::Notification& release;
  ~ReleaseOnExit() {
    if (!release.HasBeenNotified()) release.Notify();
  }
};

using testing::StartServer;

ActorOptions Lines() {
  ActorOptions options;
  options.codec.kind = CodecKind::kLines;
  return options;
}

uint64_t Dropped(const Server& server, MailDrop reason) {
  return server.Stats().Total().mail_dropped_by_reason[static_cast<size_t>(reason)];
}
uint64_t Closed(const Server& server, CloseReason reason) {
  return server.Stats().Total().closed_by_reason[static_cast<size_t>(reason)];
}

// "sink": remember me as the target. "flood N": send N mails to the target
// in one callback and answer how many were taken. Mail: written as a line.
class FloodActor final : public Actor {
 public:
  explicit FloodActor(std::atomic<ActorRef*>& target) : target_(target) {}
  void OnMessage(Context& ctx, Bytes line) override {
    if (line == "sink") {
      sink_ = ctx.Self();
      target_ = &sink_;
      ctx.WriteFrame("ready");
      return;
    }
    int n = 0;
    ASSERT_TRUE(absl::SimpleAtoi(AsAbsl(line.substr(6)), &n));
    int taken = 0;
    for (int i = 0; i < n; ++i) taken += ctx.Send(*target_.load(), Mail::Of(i));
    ctx.WriteFrame(absl::StrCat("taken ", taken));
  }
  void OnMail(Context& ctx, Mail mail) override {
    if (const int* i = mail.Get<int>()) ctx.WriteFrame(absl::StrCat(*i));
  }

 private:
  std::atomic<ActorRef*>& target_;
  ActorRef sink_;
};

struct Flood {
  std::unique_ptr<Server> server;
  std::unique_ptr<LineClient> sink;
  std::unique_ptr<LineClient> source;
  std::optional<std::string> taken;
};

// One reactor, so the flood goes straight into the sink's mailbox within
// one callback: the capacity, not the delivery speed, decides.
Flood RunFlood(MailboxOverflow policy, std::atomic<ActorRef*>& target, int mails) {
  ServerOptions options;
  options.workers = 1;
  options.connection.mailbox_capacity = 100;
  options.connection.mailbox_overflow = policy;
  Flood f;
  f.server = StartServer(
      options, ActorFactory([&] { return std::make_unique<FloodActor>(target); }, Lines()));
  if (f.server == nullptr) return f;
  f.sink = std::make_unique<LineClient>(f.server->address());
  f.source = std::make_unique<LineClient>(f.server->address());
  EXPECT_TRUE(f.sink->Send("sink\n"));
  EXPECT_EQ(f.sink->ReadLine(), "ready");
  EXPECT_TRUE(f.source->Send(absl::StrCat("flood ", mails, "\n")));
  f.taken = f.source->ReadLine();
  return f;
}

TEST(MailboxPolicyTest, DropNewestKeepsTheFirstMailsAndTellsTheSender) {
  std::atomic<ActorRef*> target{nullptr};
  Flood f = RunFlood(MailboxOverflow::kDropNewest, target, 5000);
  ASSERT_NE(f.server, nullptr);
  EXPECT_EQ(f.taken, "taken 100");
  for (int i = 0; i < 100; ++i) ASSERT_EQ(f.sink->ReadLine(), absl::StrCat(i));
  EXPECT_FALSE(f.sink->ReadLine(absl::Milliseconds(50)).has_value());
  EXPECT_EQ(Dropped(*f.server, MailDrop::kMailboxFull), 4900u);
  EXPECT_GE(f.server->Stats().Total().mailbox_depth_max, 100u);
}

TEST(MailboxPolicyTest, DropOldestKeepsTheLatestMails) {
  std::atomic<ActorRef*> target{nullptr};
  Flood f = RunFlood(MailboxOverflow::kDropOldest, target, 5000);
  ASSERT_NE(f.server, nullptr);
  EXPECT_EQ(f.taken, "taken 5000");  // each one taken, at an older one's cost
  for (int i = 4900; i < 5000; ++i) ASSERT_EQ(f.sink->ReadLine(), absl::StrCat(i));
  EXPECT_EQ(Dropped(*f.server, MailDrop::kEvicted), 4900u);
}

TEST(MailboxPolicyTest, CloseActorClosesTheFloodedActorOnly) {
  std::atomic<ActorRef*> target{nullptr};
  Flood f = RunFlood(MailboxOverflow::kCloseActor, target, 5000);
  ASSERT_NE(f.server, nullptr);
  EXPECT_EQ(f.taken, "taken 100");
  EXPECT_TRUE(f.sink->WaitForEof());
  EXPECT_EQ(Closed(*f.server, CloseReason::kMailboxOverflow), 1u);
  // The 100 that were waiting die with the actor, and so do the rest.
  EXPECT_EQ(Dropped(*f.server, MailDrop::kActorClosed), 101u);
  EXPECT_EQ(Dropped(*f.server, MailDrop::kGone), 4899u);
  ASSERT_TRUE(f.source->Send("flood 0\n"));  // the sender is unharmed
  EXPECT_EQ(f.source->ReadLine(), "taken 0");
}

// Sends to refs that name nothing; must not take the process down.
class BadRefActor final : public Actor {
 public:
  void OnMessage(Context& ctx, Bytes) override {
    const bool a = ctx.Send(ActorRef{}, Mail::Of(1));          // no generation
    const bool b = ctx.Send(ActorRef{99, 0, 1}, Mail::Of(2));  // no such reactor
    ActorRef stale = ctx.Self();
    ++stale.generation;  // not (yet) anyone
    const bool c = ctx.Send(stale, Mail::Of(3));
    ctx.WriteFrame(absl::StrCat(a, b, c));
  }
};

TEST(ActorRefTest, BadRefsAreDroppedAndCountedNeverFatal) {
  ServerOptions options;
  options.workers = 2;
  auto server =
      StartServer(options, ActorFactory([] { return std::make_unique<BadRefActor>(); }, Lines()));
  ASSERT_NE(server, nullptr);
  LineClient client(server->address());
  ASSERT_TRUE(client.Send("go\n"));
  EXPECT_EQ(client.ReadLine(), "000");
  EXPECT_EQ(Dropped(*server, MailDrop::kInvalidRef), 2u);
  EXPECT_EQ(Dropped(*server, MailDrop::kGone), 1u);
  // From outside the server too.
  EXPECT_FALSE(server->SendMail(ActorRef{7, 0, 1}, Mail::Of(4)));
  EXPECT_FALSE(server->SendMail(ActorRef{}, Mail::Of(5)));
  EXPECT_EQ(Dropped(*server, MailDrop::kInvalidRef), 4u);
}

// Offloads each line; the work of every third line takes longer, so with
// several workers results finish out of order.
class UnevenWorkActor final : public Actor {
 public:
  void OnMessage(Context& ctx, Bytes line) override {
    int n = 0;
    ASSERT_TRUE(absl::SimpleAtoi(AsAbsl(line), &n));
    ctx.Offload(
        [n] {
          if (n % 3 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(3));
          return n;
        },
        [](Context& c, int done) { c.WriteFrame(absl::StrCat(done)); });
  }
};

TEST(OffloadOrderTest, ResultsComeBackInSubmissionOrder) {
  OffloadPool pool(4);
  ActorOptions actor_options = Lines();
  actor_options.offload = &pool;
  ServerOptions options;
  options.workers = 1;
  auto server = StartServer(
      options, ActorFactory([] { return std::make_unique<UnevenWorkActor>(); }, actor_options));
  ASSERT_NE(server, nullptr);
  LineClient client(server->address());
  std::string batch;
  for (int i = 0; i < 300; ++i) absl::StrAppend(&batch, i, "\n");
  ASSERT_TRUE(client.Send(batch));  // pipelined: all in flight at once
  for (int i = 0; i < 300; ++i)
    ASSERT_EQ(client.ReadLine(), absl::StrCat(i)) << "reply out of order";
}

TEST(DrainTest, StopWaitsForRepliesStillOwedByOffloadedWork) {
  // Two requests read, their work still running when the drain begins: the
  // drain must deliver both replies before the FIN.
  testing::Notification started;
  testing::Notification release;
  OffloadPool pool(2);
  ReleaseOnExit guard{release};
  std::atomic<int> calls{0};
  ActorOptions actor_options = Lines();
  actor_options.offload = &pool;
  ServerOptions options;
  options.workers = 1;
  options.drain_timeout = absl::Seconds(30);
  auto server = StartServer(options, ActorFactory(
                                         [&] {
                                           return std::make_unique<WorkActor>(0, [&](int64_t) {
                                             if (calls.fetch_add(1) == 1) started.Notify();
                                             release.WaitForNotification();
                                           });
                                         },
                                         actor_options));
  ASSERT_NE(server, nullptr);
  LineClient client(server->address());
  ASSERT_TRUE(client.Send("one\ntwo\n"));
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(absl::Seconds(20)));
  std::thread stopper([&] { server->Stop(); });
  // The drain has begun (the health check would say so) while both are owed.
  ASSERT_TRUE(WaitFor([&] { return !server->accepting(); }));
  release.Notify();
  EXPECT_EQ(client.ReadLine(), "one");
  EXPECT_EQ(client.ReadLine(), "two");
  EXPECT_TRUE(client.WaitForEof());
  client.Close();  // the server lingers for our close after its FIN
  stopper.join();
  EXPECT_EQ(Closed(*server, CloseReason::kShutdown), 0u);  // nothing was cut
}

TEST(DrainTest, AnInfiniteDrainTimeoutDoesNotCutAtOnce) {
  testing::Notification started;
  testing::Notification release;
  OffloadPool pool(1);
  ReleaseOnExit guard{release};
  ActorOptions actor_options = Lines();
  actor_options.offload = &pool;
  ServerOptions options;
  options.workers = 1;
  options.drain_timeout = absl::InfiniteDuration();
  auto server = StartServer(options, ActorFactory(
                                         [&] {
                                           return std::make_unique<WorkActor>(0, [&](int64_t) {
                                             started.Notify();
                                             release.WaitForNotification();
                                           });
                                         },
                                         actor_options));
  ASSERT_NE(server, nullptr);
  LineClient client(server->address());
  ASSERT_TRUE(client.Send("late\n"));
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(absl::Seconds(20)));
  std::thread stopper([&] { server->Stop(); });
  ASSERT_TRUE(WaitFor([&] { return !server->accepting(); }));
  // An overflowed deadline would have cut the connection by now.
  EXPECT_FALSE(client.WaitForEof(absl::Milliseconds(200)));
  release.Notify();
  EXPECT_EQ(client.ReadLine(), "late");
  EXPECT_TRUE(client.WaitForEof());
  client.Close();
  stopper.join();
}

TEST(IdleTimeoutTest, InfiniteMeansNever) {
  ServerOptions options;
  options.workers = 1;
  options.idle_timeout = absl::InfiniteDuration();
  auto server = StartServer(options, ActorFactory([] { return std::make_unique<EchoActor>(); }));
  ASSERT_NE(server, nullptr);
  LineClient client(server->address());
  // The wrapped deadline closed every connection within about a second.
  EXPECT_FALSE(client.WaitForEof(absl::Milliseconds(1500)));
  ASSERT_TRUE(client.Send("alive\n"));
  EXPECT_EQ(client.ReadLine(), "alive");
  EXPECT_EQ(server->Stats().Total().deadline_entries, 0u);
}

std::string Frame(size_t n, char fill) {
  std::string frame(4 + n, fill);
  frame[0] = static_cast<char>(n >> 24);
  frame[1] = static_cast<char>(n >> 16);
  frame[2] = static_cast<char>(n >> 8);
  frame[3] = static_cast<char>(n);
  return frame;
}

TEST(CodecLimitTest, FramesUpToMaxFrameAreServedAboveSixteenMiB) {
  // The connection's input limit follows the codec: with a fixed 16 MiB
  // limit a 20 MiB max_frame failed silently, and a frame of exactly
  // max_frame tripped the limit at the boundary.
  for (size_t max_frame : {size_t{16} << 20, size_t{20} << 20}) {
    BuiltinOptions builtin;
    builtin.mode = "echo";
    builtin.codec = "length";
    builtin.max_frame = max_frame;
    // Default watermarks: one 20 MiB reply to a peer that keeps up is far
    // above max_output_bytes (4 MiB) but is no slow consumer.
    ServerOptions options;
    options.workers = 1;
    auto server = StartServer(options, *MakeBuiltinFactory(builtin));
    ASSERT_NE(server, nullptr);
    LineClient client(server->address());
    const std::string frame = Frame(max_frame, 'f');
    std::thread writer([&] { EXPECT_TRUE(client.Send(frame)); });
    std::optional<std::string> echo = client.ReadBytes(frame.size(), absl::Seconds(60));
    writer.join();
    ASSERT_TRUE(echo.has_value()) << "max_frame " << max_frame;
    EXPECT_TRUE(*echo == frame);
    EXPECT_EQ(Closed(*server, CloseReason::kInputTooLarge), 0u);
    EXPECT_EQ(Closed(*server, CloseReason::kSlowConsumer), 0u);
  }
}

TEST(ChatTest, AMemberThatIsBehindMissesLinesInsteadOfGrowingTheServer) {
  BuiltinOptions builtin;
  builtin.mode = "chat";
  ServerOptions options;
  options.workers = 2;
  options.connection.high_watermark = 64 << 10;
  options.connection.low_watermark = 16 << 10;
  options.connection.max_output_bytes = 1 << 20;
  auto server = StartServer(options, *MakeBuiltinFactory(builtin));
  ASSERT_NE(server, nullptr);
  LineClient stalled(server->address());  // joins, never reads
  LineClient talker(server->address());
  LineClient reader(server->address());
  ASSERT_TRUE(WaitFor([&] { return server->Stats().Total().accepted == 3; }));
  // 16 MB: more than the loopback socket buffers of the stalled member
  // can absorb, so the server must either queue it or shed it. The talker
  // goes in bursts smaller than the high watermark and waits for the reader
  // after each, so a reader that keeps up is never behind: it must get
  // every line, in order. (Without that pacing a reader slower than the
  // talker would be shed too, which is the policy, not a fault.)
  constexpr int kLines = 16000;
  constexpr int kBurst = 50;  // 50 KB < the 64 KiB watermark
  const std::string payload(1000, 'p');
  for (int first = 0; first < kLines; first += kBurst) {
    std::string burst;
    for (int i = first; i < first + kBurst; ++i) absl::StrAppend(&burst, i, " ", payload, "\n");
    ASSERT_TRUE(talker.Send(burst));
    for (int i = first; i < first + kBurst; ++i) {
      std::optional<std::string> line = reader.ReadLine();
      ASSERT_TRUE(line.has_value()) << "line " << i;
      const size_t colon = line->find(": ");
      ASSERT_NE(colon, std::string::npos);
      ASSERT_EQ(line->substr(colon + 2, line->find(' ', colon + 2) - colon - 2), absl::StrCat(i));
    }
  }
  // The stalled member's copies are shed on its own reactor, which may lag
  // the reader's: wait for the count rather than read it once.
  EXPECT_TRUE(WaitFor([&] { return server->Stats().Total().frames_shed > 0; }));
  EXPECT_EQ(Closed(*server, CloseReason::kSlowConsumer), 0u);
  EXPECT_FALSE(stalled.WaitForEof(absl::Milliseconds(1)));  // still a member
}

// "ask": offloaded work (held by the test), then a question to the other
// reactor's task queue; the answer comes back by mail. Pending work covers
// both, as a sharded store's actor would count it.
struct Question {
  testing::Notification started;
  testing::Notification release;
};
// Answers every request with "answer".
class AnswerService final : public ServiceActor {
 public:
  void OnMail(Context& ctx, Mail mail) override {
    ctx.Reply(mail.return_address(), std::string("answer"));
  }
};

class AskOtherReactorActor final : public Actor {
 public:
  AskOtherReactorActor(Question& q, Sharded shards) : q_(q), shards_(std::move(shards)) {}
  void OnMessage(Context& ctx, Bytes) override {
    ctx.Offload(
        [&q = q_] {
          q.started.Notify();
          q.release.WaitForNotification();
          return 0;
        },
        [shards = shards_](Context& c, int) {
          // Asks the other reactor's service (the reactor with no
          // connection left).
          c.Ask<std::string>(shards.shard(1 - c.reactor_index()), 0, absl::Seconds(30),
                             [](Context& back, absl::StatusOr<std::string> text) {
                               back.WriteFrame(text.ok() ? *text : text.status().ToString());
                             });
        });
  }

 private:
  Question& q_;
  Sharded shards_;
};

TEST(DrainTest, AReactorWithNoConnectionsLeftStillAnswersTheOthers) {
  // The reactor that holds no connection is done draining at once; it must
  // still run the task a connection elsewhere is waiting on.
  Question q;
  OffloadPool pool(1);
  ReleaseOnExit guard{q.release};
  ActorOptions actor_options = Lines();
  actor_options.offload = &pool;
  ServerOptions options;
  options.workers = 2;
  options.drain_timeout = absl::Seconds(30);
  Sharded shards;
  auto server =
      StartServer(options,
                  ActorFactory([&] { return std::make_unique<AskOtherReactorActor>(q, shards); },
                               actor_options),
                  [&](Server& s) {
                    shards.Spawn(s, [](uint32_t) { return std::make_unique<AnswerService>(); });
                  });
  ASSERT_NE(server, nullptr);
  LineClient client(server->address());  // the first connection: reactor 0
  ASSERT_TRUE(client.Send("ask\n"));
  ASSERT_TRUE(q.started.WaitForNotificationWithTimeout(absl::Seconds(20)));
  std::thread stopper([&] { server->Stop(); });
  ASSERT_TRUE(WaitFor([&] { return !server->accepting(); }));
  // Give the idle reactor time to leave, as it did before it waited for
  // the others (observing, not syncing: the fix passes either way).
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  q.release.Notify();
  EXPECT_EQ(client.ReadLine(), "answer");
  EXPECT_TRUE(client.WaitForEof());
  client.Close();
  stopper.join();
  EXPECT_EQ(Closed(*server, CloseReason::kShutdown), 0u);
}

TEST(PendingWorkTest, APipeliningClientQueuesAtMostMaxPendingWork) {
  testing::Notification release;
  std::atomic<int> submitted{0};
  OffloadPool pool(1);
  ReleaseOnExit guard{release};
  class CountingWorkActor final : public Actor {
   public:
    CountingWorkActor(std::atomic<int>& submitted, testing::Notification& release)
        : submitted_(submitted), release_(release) {}
    void OnMessage(Context& ctx, Bytes line) override {
      ++submitted_;
      ctx.Offload(
          [&release = release_, text = std::string(line)] {
            release.WaitForNotification();
            return text;
          },
          [](Context& c, std::string text) { c.WriteFrame(text); });
    }

   private:
    std::atomic<int>& submitted_;
    testing::Notification& release_;
  };
  ActorOptions actor_options = Lines();
  actor_options.offload = &pool;
  ServerOptions options;
  options.workers = 1;
  options.connection.max_pending_work = 10;
  auto server = StartServer(
      options, ActorFactory([&] { return std::make_unique<CountingWorkActor>(submitted, release); },
                            actor_options));
  ASSERT_NE(server, nullptr);
  LineClient client(server->address());
  std::string lines;
  for (int i = 0; i < 500; ++i) absl::StrAppend(&lines, i, "\n");
  ASSERT_TRUE(client.Send(lines));
  ASSERT_TRUE(WaitFor([&] { return submitted.load() == 10; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // observing, not syncing
  EXPECT_EQ(submitted.load(), 10) << "took requests past max_pending_work";
  release.Notify();
  // The waiting requests are taken up again as replies go out, in order.
  for (int i = 0; i < 500; ++i) ASSERT_EQ(client.ReadLine(), absl::StrCat(i));
  EXPECT_EQ(submitted.load(), 500);
}

// "hold": owes a reply it never writes, then asks to close.
class NeverRepliesActor final : public Actor {
 public:
  void OnMessage(Context& ctx, Bytes) override {
    ctx.AddPendingWork();
    ctx.CloseAfterFlush();
  }
};

TEST(PendingWorkTest, CloseAfterFlushWaitsForOwedWorkAtMostFlushTimeout) {
  ServerOptions options;
  options.workers = 1;
  options.connection.flush_timeout = absl::Milliseconds(200);
  auto server = StartServer(
      options, ActorFactory([] { return std::make_unique<NeverRepliesActor>(); }, Lines()));
  ASSERT_NE(server, nullptr);
  LineClient client(server->address());
  ASSERT_TRUE(client.Send("hold\n"));
  EXPECT_TRUE(client.WaitForEof());
  EXPECT_TRUE(WaitFor([&] { return Closed(*server, CloseReason::kFlushTimeout) == 1; }));
}

// A heartbeat every 20 ms, re-armed forever; "late": an answer in 100 ms.
class TimerActor final : public Actor {
 public:
  void OnOpen(Context& ctx) override { Beat(ctx); }
  void OnMessage(Context& ctx, Bytes line) override {
    if (line == "late") {
      ctx.ReplyAfter(absl::Milliseconds(100), [](Context& c) { c.WriteFrame("here"); });
    }
  }

 private:
  static void Beat(Context& ctx) {
    ctx.After(absl::Milliseconds(20), [](Context& c) { Beat(c); });
  }
};

TEST(PendingWorkTest, PlainTimersDoNotHoldACloseButReplyTimersDo) {
  ServerOptions options;
  options.workers = 1;
  auto server =
      StartServer(options, ActorFactory([] { return std::make_unique<TimerActor>(); }, Lines()));
  ASSERT_NE(server, nullptr);
  // A heartbeat alone: the half-close closes at once, timer or not.
  LineClient beating(server->address());
  beating.ShutdownWrite();
  EXPECT_TRUE(beating.WaitForEof());
  // An owed reply on a timer: the half-close waits for it.
  LineClient asking(server->address());
  ASSERT_TRUE(asking.Send("late\n"));
  asking.ShutdownWrite();
  EXPECT_EQ(asking.ReadLine(), "here");
  EXPECT_TRUE(asking.WaitForEof());
}

}  // namespace
}  // namespace troupe
