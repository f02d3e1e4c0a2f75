// Steady-state actor mail allocates nothing: once warm, ctx.Send between
// actors (on two reactors and on one) and a group's fan-out to its members
// make no heap allocation on any thread; a Broadcast makes exactly one (its
// shared message), however many members and reactors it reaches. And an
// Ask's reply, which travels unboxed, arrives as it was sent. This binary
// replaces the global operator new/delete with counting versions, so it is
// its own test target.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "actors/actor.h"
#include "actors/cell.h"
#include "actors/service.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "tests/support/counting_new.h"  // replaces operator new/delete
#include "tests/support/wait.h"

namespace troupe {
namespace {

using testing::WaitFor;

constexpr int kBurst = 64;
constexpr int kWarmupBursts = 40;
constexpr int kMeasuredBursts = 157;              // 10,048 sends
constexpr const char* kShortText = "short text";  // fits std::string's own buffer
constexpr const char* kGroup = "room";
constexpr int kMembersPerReactor = 3;

struct Tally {
  std::atomic<int> started{0};  // OnStart has run (joins allocate: before counting)
  std::atomic<uint64_t> mails{0};
  std::atomic<uint64_t> wrong{0};
};

// Counts what arrives: a uint64_t, the short string, or the group's message.
class Sink final : public ServiceActor {
 public:
  Sink(Tally& tally, bool member) : tally_(tally), member_(member) {}
  void OnStart(Context& ctx) override {
    if (member_) ctx.Join(kGroup);
    tally_.started.fetch_add(1, std::memory_order_release);
  }
  void OnMail(Context& /*ctx*/, Mail mail) override {
    const std::string* text = mail.Get<std::string>();
    const GroupMessage* message = mail.Get<GroupMessage>();
    const bool right = mail.Is<uint64_t>() || (text != nullptr && *text == kShortText) ||
                       (message != nullptr && message->text == kShortText);
    if (!right) tally_.wrong.fetch_add(1, std::memory_order_relaxed);
    tally_.mails.fetch_add(1, std::memory_order_release);
  }

 private:
  Tally& tally_;
  const bool member_;
};

enum class Mode { kSendU64, kSendString, kBroadcast };

struct Burst {  // the test thread's order to the driver
  Mode mode;
  ActorRef to;
};

// Sends a burst on order: from reactor 0, as an actor would.
class Driver final : public ServiceActor {
 public:
  void OnMail(Context& ctx, Mail mail) override {
    const Burst* burst = mail.Get<Burst>();
    if (burst == nullptr) return;
    for (int i = 0; i < kBurst; ++i) {
      switch (burst->mode) {
        case Mode::kSendU64:
          ctx.Send(burst->to, Mail::Of<uint64_t>(static_cast<uint64_t>(i)));
          break;
        case Mode::kSendString:
          ctx.Send(burst->to, Mail::Of(std::string(kShortText)));
          break;
        case Mode::kBroadcast:
          ctx.Broadcast(kGroup, kShortText);
          break;
      }
    }
  }
};

// Replies travel as the reply's own Mail (actors/cell.h, kAskReplyMark), not
// boxed in another: the asker gets the value as sent, with no return
// address; an empty reply arrives as an empty OK, an error as the error.
class Answerer final : public ServiceActor {
 public:
  void OnMail(Context& ctx, Mail mail) override {
    const std::string* question = mail.Get<std::string>();
    if (question == nullptr) return;
    if (*question == "value") {
      ctx.Reply(mail.return_address(), std::string("answer"));
    } else if (*question == "empty") {
      ctx.ReplyMail(mail.return_address(), Mail());
    } else {
      ctx.ReplyError(mail.return_address(), absl::NotFoundError("no answer"));
    }
  }
};

struct Answers {
  std::mutex mu;
  std::vector<std::string> seen;  // guarded by mu
};

class Asker final : public ServiceActor {
 public:
  Asker(ActorRef target, Answers& answers) : target_(target), answers_(answers) {}
  void OnMail(Context& ctx, Mail mail) override {
    const std::string* question = mail.Get<std::string>();
    if (question == nullptr) return;
    ctx.AskMail(target_, Mail::Of(*question), absl::Seconds(20),
                [this, q = *question](Context& /*c*/, absl::StatusOr<Mail> reply) {
                  std::string seen = q + ": ";
                  if (!reply.ok()) {
                    seen += reply.status().ToString();
                  } else if (reply->empty()) {
                    seen += "empty";
                  } else if (const std::string* text = reply->Get<std::string>()) {
                    seen += *text;
                    if (reply->return_address().valid()) seen += " (with an address)";
                  }
                  std::lock_guard<std::mutex> lock(answers_.mu);
                  answers_.seen.push_back(seen);
                });
  }

 private:
  const ActorRef target_;
  Answers& answers_;
};

// No connection is made in these tests.
class Silent final : public Actor {
 public:
  void OnMessage(Context& /*ctx*/, Bytes /*message*/) override {}
};

// Two reactors: the driver and a sink on 0, a sink on 1, and
// kMembersPerReactor group members on each.
class ActorMailAllocTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.address = Address::Parse("127.0.0.1:0").value();
    options.workers = 2;
    // No acceptor thread: one less thread to start (and allocate) late.
    options.accept_mode = AcceptMode::kReusePort;
    auto server = Server::Create(options, ActorFactory([] { return std::make_unique<Silent>(); }));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    driver_ = SpawnService(*server_, 0, [] { return std::make_unique<Driver>(); });
    for (uint32_t r = 0; r < 2; ++r) {
      const ActorRef answerer =
          SpawnService(*server_, r, [] { return std::make_unique<Answerer>(); });
      askers_[r] = SpawnService(
          *server_, 0, [this, answerer] { return std::make_unique<Asker>(answerer, answers_); });
    }
    // Last on each reactor: their OnStart means the services before them
    // started too (one mailbox pass, in spawn order).
    for (uint32_t r = 0; r < 2; ++r) {
      sinks_[r] =
          SpawnService(*server_, r, [this] { return std::make_unique<Sink>(sent_, false); });
      for (int i = 0; i < kMembersPerReactor; ++i) {
        SpawnService(*server_, r, [this] { return std::make_unique<Sink>(members_, true); });
      }
    }
    server_->Start();
    // Every service has started (OnStart allocates) before anything is counted.
    ASSERT_TRUE(WaitFor([&] {
      return sent_.started.load(std::memory_order_acquire) == 2 &&
             members_.started.load(std::memory_order_acquire) == 2 * kMembersPerReactor;
    }));
  }

  void TearDown() override {
    if (server_ == nullptr) return;
    server_->Stop();
    EXPECT_EQ(server_->Stats().Total().services, 0u);
  }

  // `bursts` bursts, each once the one before has all arrived at `tally`
  // (`per_burst` mails each).
  bool RunBursts(int bursts, Burst burst, Tally& tally, uint64_t per_burst) {
    for (int b = 0; b < bursts; ++b) {
      const uint64_t want = tally.mails.load(std::memory_order_acquire) + per_burst;
      if (!server_->SendMail(driver_, Mail::Of(burst))) return false;
      if (!WaitFor([&] { return tally.mails.load(std::memory_order_acquire) >= want; })) {
        return false;
      }
    }
    return true;
  }

  // Allocations over kMeasuredBursts warm bursts; -1 if they did not all arrive.
  int64_t CountBursts(Burst burst, Tally& tally, uint64_t per_burst) {
    if (!RunBursts(kWarmupBursts, burst, tally, per_burst)) return -1;
    testing::g_allocations.store(0);
    testing::CountAllocations(true);
    const bool ok = RunBursts(kMeasuredBursts, burst, tally, per_burst);
    testing::CountAllocations(false);
    return ok ? static_cast<int64_t>(testing::g_allocations.load()) : -1;
  }

  std::unique_ptr<Server> server_;
  Tally sent_;
  Tally members_;
  ActorRef driver_;
  ActorRef sinks_[2];
  Answers answers_;
  ActorRef askers_[2];  // on reactor 0; asking an Answerer on reactor 0, 1
};

TEST_F(ActorMailAllocTest, SendToAnotherReactorAllocatesNothing) {
  EXPECT_EQ(CountBursts(Burst{Mode::kSendU64, sinks_[1]}, sent_, kBurst), 0);
  EXPECT_EQ(CountBursts(Burst{Mode::kSendString, sinks_[1]}, sent_, kBurst), 0);
  EXPECT_EQ(sent_.wrong.load(), 0u);
}

TEST_F(ActorMailAllocTest, SendOnTheSameReactorAllocatesNothing) {
  EXPECT_EQ(CountBursts(Burst{Mode::kSendU64, sinks_[0]}, sent_, kBurst), 0);
  EXPECT_EQ(CountBursts(Burst{Mode::kSendString, sinks_[0]}, sent_, kBurst), 0);
  EXPECT_EQ(sent_.wrong.load(), 0u);
}

// Every member on both reactors gets each broadcast; the one allocation per
// broadcast is its message (GroupFanOut::Create): none per member, none for
// the hop to the other reactor.
TEST_F(ActorMailAllocTest, BroadcastAllocatesItsMessageOnly) {
  const uint64_t per_burst = static_cast<uint64_t>(kBurst) * 2 * kMembersPerReactor;
  EXPECT_EQ(CountBursts(Burst{Mode::kBroadcast, {}}, members_, per_burst),
            static_cast<int64_t>(kMeasuredBursts) * kBurst);
  EXPECT_EQ(members_.wrong.load(), 0u);
}

// The fan-out itself, with the message made once: each member's Mail::Share
// is a refcount increment, and the hop to the other reactor (a task holding
// a GroupFanOut) is held in the task.
TEST_F(ActorMailAllocTest, FanOutOfASharedMessageAllocatesNothing) {
  Reactor& here = server_->reactor(0);
  Reactor& there = server_->reactor(1);
  const internal::GroupFanOut fan_out =
      internal::GroupFanOut::Create(GroupMessage{kGroup, ActorRef{}, kShortText}, ActorRef{});
  const uint64_t per_burst = static_cast<uint64_t>(kBurst) * 2 * kMembersPerReactor;
  auto run = [&](int bursts) {
    for (int b = 0; b < bursts; ++b) {
      const uint64_t want = members_.mails.load(std::memory_order_acquire) + per_burst;
      here.Post([&fan_out, &here] {
        for (int i = 0; i < kBurst; ++i) internal::FanOutInLoop(here, fan_out.shared(), {});
      });
      for (int i = 0; i < kBurst; ++i) there.TryPost(fan_out.To(there));
      if (!WaitFor([&] { return members_.mails.load(std::memory_order_acquire) >= want; })) {
        return false;
      }
    }
    return true;
  };
  ASSERT_TRUE(run(kWarmupBursts));
  testing::g_allocations.store(0);
  testing::CountAllocations(true);
  const bool ok = run(kMeasuredBursts);
  testing::CountAllocations(false);
  ASSERT_TRUE(ok);
  EXPECT_EQ(testing::g_allocations.load(), 0u);
  EXPECT_EQ(members_.wrong.load(), 0u);
}

TEST_F(ActorMailAllocTest, AskRepliesArriveAsSent) {
  for (uint32_t r = 0; r < 2; ++r) {
    {
      std::lock_guard<std::mutex> lock(answers_.mu);
      answers_.seen.clear();
    }
    for (const char* question : {"value", "empty", "error"}) {
      ASSERT_TRUE(server_->SendMail(askers_[r], Mail::Of(std::string(question))));
    }
    ASSERT_TRUE(WaitFor([&] {
      std::lock_guard<std::mutex> lock(answers_.mu);
      return answers_.seen.size() == 3;
    }));
    std::lock_guard<std::mutex> lock(answers_.mu);
    EXPECT_EQ(answers_.seen, (std::vector<std::string>{"value: answer", "empty: empty",
                                                       "error: NOT_FOUND: no answer"}))
        << "answerer on reactor " << r;
  }
}

}  // namespace
}  // namespace troupe
