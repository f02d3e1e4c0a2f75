// Reactor tests over socketpair() connections: tasks, mail, timers and the
// connection table's generations.
#include "core/reactor.h"

#include <sys/socket.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/sync.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using testing::WaitFor;

// Records what happens to its connection; read from the test thread under
// `mu` (the test's own lock, not on any reactor path under test).
struct Journal {
  testing::Mutex mu;
  std::vector<ConnectionId> opened ABSL_GUARDED_BY(mu);
  std::vector<std::pair<ConnectionId, int>> mail ABSL_GUARDED_BY(mu);
  std::vector<CloseReason> closed ABSL_GUARDED_BY(mu);
};

class RecordingHandler final : public ConnectionHandler {
 public:
  explicit RecordingHandler(Journal& journal) : journal_(journal) {}
  void OnOpen(Connection& conn) override {
    testing::MutexLock lock(&journal_.mu);
    journal_.opened.push_back(conn.id());
  }
  size_t OnData(Connection& conn, std::string_view data) override {
    if (data == "close") conn.Close();
    return data.size();
  }
  void OnMail(Connection& conn, Mail mail) override {
    testing::MutexLock lock(&journal_.mu);
    journal_.mail.emplace_back(conn.id(), *mail.As<int>());
  }
  void OnClose(Connection&, CloseReason reason) override {
    testing::MutexLock lock(&journal_.mu);
    journal_.closed.push_back(reason);
  }

 private:
  Journal& journal_;
};

class ReactorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    reactor_ = Reactor::Create({}, [this](Connection&) {
                 return std::make_unique<RecordingHandler>(journal_);
               }).value();
    thread_ = std::thread([this] { reactor_->Run(); });
  }
  void TearDown() override {
    reactor_->Stop();
    thread_.join();
  }

  // Adopts one end of a new socketpair; returns the other end and the id.
  std::pair<Fd, ConnectionId> AddConnection() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    size_t before;
    {
      testing::MutexLock lock(&journal_.mu);
      before = journal_.opened.size();
    }
    moodycamel::ProducerToken token = reactor_->MakeHandoffToken();
    reactor_->Adopt(token, Handoff{sv[0], Address()});
    ConnectionId id;
    EXPECT_TRUE(WaitFor([&] {
      testing::MutexLock lock(&journal_.mu);
      if (journal_.opened.size() == before) return false;
      id = journal_.opened.back();
      return true;
    }));
    return {Fd(sv[1]), id};
  }

  size_t ClosedCount() {
    testing::MutexLock lock(&journal_.mu);
    return journal_.closed.size();
  }

  Journal journal_;
  std::unique_ptr<Reactor> reactor_;
  std::thread thread_;
};

TEST_F(ReactorTest, PostRunsOnLoopThreadAndNeverInline) {
  testing::Notification done;
  std::atomic<bool> inner_ran_inline{true};
  // Outlives both tasks: the inner one runs after the outer one has returned.
  std::atomic<bool> inner_ran{false};
  reactor_->Post([&] {
    EXPECT_TRUE(reactor_->IsInLoopThread());
    reactor_->Post([&] {
      inner_ran = true;
      done.Notify();
    });
    inner_ran_inline = inner_ran.load();  // must still be false here
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_FALSE(inner_ran_inline.load());
  EXPECT_FALSE(reactor_->IsInLoopThread());
}

TEST_F(ReactorTest, RunAfterFiresOnLoopThread) {
  testing::Notification fired;
  reactor_->Post([&] {
    reactor_->RunAfter(absl::Milliseconds(5), [&] {
      EXPECT_TRUE(reactor_->IsInLoopThread());
      fired.Notify();
    });
  });
  EXPECT_TRUE(fired.WaitForNotificationWithTimeout(absl::Seconds(20)));
}

TEST_F(ReactorTest, MailKeepsPerSenderOrderAcrossThreads) {
  auto [peer, id] = AddConnection();
  constexpr int kSenders = 4;
  constexpr int kPerSender = 5000;
  std::vector<std::thread> senders;
  for (int s = 0; s < kSenders; ++s) {
    senders.emplace_back([&, s] {
      for (int i = 0; i < kPerSender; ++i) {
        reactor_->SendMail(id, Mail::Of(s * kPerSender + i));
      }
    });
  }
  for (auto& t : senders) t.join();
  ASSERT_TRUE(WaitFor([&] {
    testing::MutexLock lock(&journal_.mu);
    return journal_.mail.size() == kSenders * kPerSender;
  }));
  testing::MutexLock lock(&journal_.mu);
  std::vector<int> last(kSenders, -1);
  for (const auto& [to, value] : journal_.mail) {
    EXPECT_EQ(to, id);
    const int sender = value / kPerSender;
    EXPECT_GT(value, last[sender]) << "out of order for sender " << sender;
    last[sender] = value;
  }
  EXPECT_EQ(reactor_->Stats().mail_delivered, uint64_t{kSenders * kPerSender});
}

TEST_F(ReactorTest, MailToClosedConnectionIsDroppedAndCounted) {
  auto [peer, id] = AddConnection();
  peer.Reset();  // EOF: the server side closes
  ASSERT_TRUE(WaitFor([&] { return ClosedCount() == 1; }));
  reactor_->SendMail(id, Mail::Of(1));
  ASSERT_TRUE(WaitFor([&] { return reactor_->Stats().mail_dropped == 1; }));
  testing::MutexLock lock(&journal_.mu);
  EXPECT_TRUE(journal_.mail.empty());
}

TEST_F(ReactorTest, StaleIdNeverReachesConnectionThatReusedTheSlot) {
  auto [old_peer, old_id] = AddConnection();
  ASSERT_EQ(::send(old_peer.get(), "close", 5, 0), 5);  // handler closes it
  ASSERT_TRUE(WaitFor([&] { return ClosedCount() == 1; }));
  auto [new_peer, new_id] = AddConnection();
  ASSERT_EQ(new_id.slot, old_id.slot) << "expected the freed slot to be reused";
  ASSERT_NE(new_id.generation, old_id.generation);
  reactor_->SendMail(old_id, Mail::Of(13));
  reactor_->SendMail(new_id, Mail::Of(42));
  ASSERT_TRUE(WaitFor([&] {
    testing::MutexLock lock(&journal_.mu);
    return journal_.mail.size() == 1;
  }));
  EXPECT_TRUE(WaitFor([&] { return reactor_->Stats().mail_dropped == 1; }));
  testing::MutexLock lock(&journal_.mu);
  EXPECT_EQ(journal_.mail[0].first, new_id);
  EXPECT_EQ(journal_.mail[0].second, 42);
  EXPECT_EQ(journal_.closed[0], CloseReason::kLocalClose);
}

TEST(ReactorAffinityDeathTest, SendOffLoopThreadAborts) {
  EXPECT_DEATH(
      {
        Journal journal;
        Connection* captured = nullptr;
        std::atomic<bool> ready{false};
        // Capture a connection pointer, then misuse it from this thread.
        auto r2 = Reactor::Create({}, [&](Connection& conn) {
                    captured = &conn;
                    ready = true;
                    return std::make_unique<RecordingHandler>(journal);
                  }).value();
        std::thread t([&] { r2->Run(); });
        int sv[2];
        ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
        moodycamel::ProducerToken token = r2->MakeHandoffToken();
        r2->Adopt(token, Handoff{sv[0], Address()});
        while (!ready) std::this_thread::yield();
        captured->Send("boom");  // not the loop thread
        t.join();
      },
      "off its loop thread");
}

}  // namespace
}  // namespace troupe
