// Steady-state mail allocates nothing: once the queues and mailboxes have
// grown to their working size, sending mail through running reactors (from
// another thread, from another reactor, on the same reactor; owned small
// values and shared ones; to a connection and to services) makes no heap
// allocation on any thread. This binary replaces the global operator
// new/delete with counting versions, so it is its own test target.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "core/loop/reactor.h"
#include "core/loop/service.h"
#include "gtest/gtest.h"
#include "tests/support/counting_new.h"  // replaces operator new/delete
#include "tests/support/wait.h"

namespace troupe {
namespace {

using testing::WaitFor;

// Mails per burst: one inbox batch (kBulk in core/loop/reactor.cc).
constexpr int kBurst = 64;
// Bursts to warm up (queue blocks, mailbox rings, the allocator's caches),
// then bursts counted: 157 * 64 = 10,048 mails per target.
constexpr int kWarmupBursts = 40;
constexpr int kMeasuredBursts = 157;
// Fits std::string's small-string buffer: no allocation of its own.
constexpr const char* kShortText = "short text";

struct Note {
  std::string text;
};

// What the targets saw, read by the test thread.
struct Tally {
  std::atomic<uint64_t> mails{0};
  std::atomic<uint64_t> wrong{0};  // not the payload the case sends
};

void Check(Tally& tally, const Mail& mail) {
  const std::string* text = mail.Get<std::string>();
  const Note* note = mail.Get<Note>();
  const bool right = mail.Is<uint64_t>() || (text != nullptr && *text == kShortText) ||
                     (note != nullptr && note->text == kShortText);
  if (!right) tally.wrong.fetch_add(1, std::memory_order_relaxed);
  tally.mails.fetch_add(1, std::memory_order_release);
}

class SinkConnection final : public ConnectionHandler {
 public:
  explicit SinkConnection(Tally& tally) : tally_(tally) {}
  size_t OnData(Connection& /*conn*/, std::string_view data) override { return data.size(); }
  void OnMail(Connection& /*conn*/, Mail mail) override { Check(tally_, mail); }

 private:
  Tally& tally_;
};

class SinkService final : public ServiceHandler {
 public:
  explicit SinkService(Tally& tally) : tally_(tally) {}
  void OnMail(Service& /*service*/, Mail mail) override { Check(tally_, mail); }

 private:
  Tally& tally_;
};

enum class From { kTestThread, kOtherReactor, kSameReactor };
enum class Payload { kUint64, kShortString, kShared };

struct Case {
  const char* name;
  From from;
  Payload payload;
  bool to_connection;  // else to services
  int services;        // how many services get each mail (a fan-out when > 1)
};

// ctest lists each case by name.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// Reactor 0 sends (kOtherReactor), reactor 1 receives: a connection over a
// socketpair and `services` services, all on reactor 1.
class MailAllocTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    fds_before_ = testing::CountOpenFds();
    for (uint32_t i = 0; i < 2; ++i) {
      ReactorOptions options;
      options.index = i;
      auto reactor = Reactor::Create(options, [this](Connection& conn) {
        connection_ = conn.id();
        opened_.store(true, std::memory_order_release);
        return std::make_unique<SinkConnection>(tally_);
      });
      ASSERT_TRUE(reactor.ok()) << reactor.status();
      reactors_.push_back(std::move(*reactor));
    }
    for (auto& reactor : reactors_) reactor->set_peers({reactors_[0].get(), reactors_[1].get()});
    for (int i = 0; i < GetParam().services; ++i) {
      services_.push_back(reactors_[1]->SpawnService(std::make_unique<SinkService>(tally_)));
    }
    for (auto& reactor : reactors_) {
      threads_.emplace_back([r = reactor.get()] { r->Run(); });
    }
    // Both loops run (a thread starting late would allocate while counted).
    std::atomic<int> running{0};
    for (auto& reactor : reactors_) reactor->Post([&running] { running.fetch_add(1); });
    ASSERT_TRUE(WaitFor([&] { return running.load() == 2; }));
    int pair[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair), 0);
    peer_fd_ = pair[1];
    HandoffToken token = reactors_[1]->MakeHandoffToken();
    reactors_[1]->Adopt(token, Handoff{pair[0], {}});
    ASSERT_TRUE(WaitFor([&] { return opened_.load(std::memory_order_acquire); }));
    if (GetParam().to_connection) targets_.push_back(connection_);
    targets_.insert(targets_.end(), services_.begin(), services_.end());
    note_ = std::make_shared<const Note>(Note{kShortText});
  }

  void TearDown() override {
    for (auto& reactor : reactors_) reactor->StopNow();
    for (std::thread& t : threads_) t.join();
    reactors_.clear();
    if (peer_fd_ >= 0) ::close(peer_fd_);
    EXPECT_EQ(testing::CountOpenFds(), fds_before_);
  }

  Mail MakeMail(uint64_t i) const {
    switch (GetParam().payload) {
      case Payload::kUint64:
        return Mail::Of<uint64_t>(i);
      case Payload::kShortString:
        return Mail::Of(std::string(kShortText));
      case Payload::kShared:
        return Mail::Share(note_);
    }
    return Mail();
  }

  // One burst: kBurst mails to each target, from where the case says.
  void SendBurstOn(Reactor* sender) {
    for (int i = 0; i < kBurst; ++i) {
      for (const ConnectionId& to : targets_) {
        if (sender == reactors_[1].get()) {
          sender->DeliverMailInLoop(to, MakeMail(static_cast<uint64_t>(i)));
        } else {
          reactors_[1]->SendMail(to, MakeMail(static_cast<uint64_t>(i)));
        }
      }
    }
  }

  // Sends `bursts` bursts, each once the one before has been handed over
  // (so the queues stay at one burst's depth, as in the warm-up); true when
  // all arrived.
  bool RunBursts(int bursts) {
    const uint64_t per_burst = static_cast<uint64_t>(kBurst) * targets_.size();
    for (int b = 0; b < bursts; ++b) {
      const uint64_t want = tally_.mails.load(std::memory_order_acquire) + per_burst;
      switch (GetParam().from) {
        case From::kTestThread:
          SendBurstOn(nullptr);
          break;
        // A task of two pointers is held in the task itself (no allocation).
        case From::kOtherReactor:
          reactors_[0]->Post([this, r = reactors_[0].get()] { SendBurstOn(r); });
          break;
        case From::kSameReactor:
          reactors_[1]->Post([this, r = reactors_[1].get()] { SendBurstOn(r); });
          break;
      }
      if (!WaitFor([&] { return tally_.mails.load(std::memory_order_acquire) >= want; })) {
        return false;
      }
    }
    return true;
  }

  int fds_before_ = 0;
  Tally tally_;
  std::vector<std::unique_ptr<Reactor>> reactors_;
  std::vector<std::thread> threads_;
  std::atomic<bool> opened_{false};
  ConnectionId connection_;  // written on reactor 1 before opened_
  std::vector<ConnectionId> services_;
  std::vector<ConnectionId> targets_;
  std::shared_ptr<const Note> note_;
  int peer_fd_ = -1;
};

// The counter itself works, on any thread: otherwise a 0 below proves nothing.
TEST(CountingAllocatorTest, SeesAllocationsOnOtherThreads) {
  std::thread other;  // created before counting: starting it allocates
  testing::g_allocations.store(0);
  testing::g_counting.store(true);
  other = std::thread([] { delete new int(7); });
  other.join();
  testing::g_counting.store(false);
  EXPECT_GE(testing::g_allocations.load(), 1u);
}

TEST_P(MailAllocTest, WarmMailAllocatesNothing) {
  ASSERT_TRUE(RunBursts(kWarmupBursts));
  const uint64_t before = tally_.mails.load();
  testing::g_allocations.store(0);
  testing::CountAllocations(true);
  const bool ok = RunBursts(kMeasuredBursts);
  testing::CountAllocations(false);
  const uint64_t allocations = testing::g_allocations.load();
  const uint64_t mails = tally_.mails.load() - before;
  ASSERT_TRUE(ok);
  EXPECT_EQ(mails, static_cast<uint64_t>(kMeasuredBursts) * kBurst * targets_.size());
  EXPECT_EQ(allocations, 0u) << allocations << " allocations over " << mails << " mails ("
                             << GetParam().name << ")";
  EXPECT_EQ(tally_.wrong.load(), 0u);
  const ReactorStats stats = reactors_[1]->Stats();
  EXPECT_EQ(stats.mail_dropped, 0u);
  EXPECT_EQ(stats.mail_delivered, tally_.mails.load());
}

INSTANTIATE_TEST_SUITE_P(
    Paths, MailAllocTest,
    ::testing::Values(
        Case{"u64_from_thread_to_connection", From::kTestThread, Payload::kUint64, true, 0},
        Case{"string_from_thread_to_service", From::kTestThread, Payload::kShortString, false, 1},
        Case{"u64_cross_reactor_to_service", From::kOtherReactor, Payload::kUint64, false, 1},
        Case{"string_cross_reactor_to_connection", From::kOtherReactor, Payload::kShortString, true,
             0},
        Case{"u64_same_reactor_to_connection", From::kSameReactor, Payload::kUint64, true, 0},
        Case{"string_same_reactor_to_service", From::kSameReactor, Payload::kShortString, false, 1},
        Case{"shared_cross_reactor_fan_out", From::kOtherReactor, Payload::kShared, true, 4},
        Case{"shared_same_reactor_fan_out", From::kSameReactor, Payload::kShared, true, 4}),
    [](const ::testing::TestParamInfo<Case>& test) { return std::string(test.param.name); });

}  // namespace
}  // namespace troupe
