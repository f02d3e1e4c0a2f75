// Reactor tests over socketpair() connections: tasks, mail, timers and the
// connection table's generations; and outbound connections (Connect) over
// real TCP sockets on 127.0.0.1 that the test owns.
#include "core/loop/reactor.h"

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/net/socket.h"
#include "core/ops/metrics_server.h"
#include "core/server.h"
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

// Reads and discards; nothing else.
class RecordingHandlerStub final : public ConnectionHandler {
 public:
  size_t OnData(Connection&, std::string_view data) override { return data.size(); }
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
    reactor_->StopNow();
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
    HandoffToken token = reactor_->MakeHandoffToken();
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

TEST_F(ReactorTest, AnInfiniteDelayNeverFires) {
  // now + ToChronoNanoseconds(inf) wraps into the past: the timer ran at once.
  std::atomic<bool> infinite_ran{false};
  testing::Notification later;
  reactor_->Post([&] {
    reactor_->RunAfter(absl::InfiniteDuration(), [&] { infinite_ran = true; });
    reactor_->RunAfter(absl::Milliseconds(20), [&] { later.Notify(); });
  });
  ASSERT_TRUE(later.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_FALSE(infinite_ran.load());
  // Still waiting, for ever (the count is published after the due timers
  // ran, so it may lag the notification by a moment).
  EXPECT_TRUE(WaitFor([&] { return reactor_->Stats().timers == 1; }));
  EXPECT_FALSE(infinite_ran.load());
}

TEST_F(ReactorTest, MailKeepsPerSenderOrderAcrossThreads) {
  auto [peer, id] = AddConnection();
  // A copy for the senders to capture: clang before 16 cannot capture a
  // structured binding (C++20 allows it).
  const ConnectionId target = id;
  constexpr int kSenders = 4;
  constexpr int kPerSender = 5000;
  std::vector<std::thread> senders;
  for (int s = 0; s < kSenders; ++s) {
    senders.emplace_back([&, s] {
      for (int i = 0; i < kPerSender; ++i) {
        reactor_->SendMail(target, Mail::Of(s * kPerSender + i));
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
    const size_t sender = static_cast<size_t>(value / kPerSender);
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

TEST_F(ReactorTest, BadRefsAreDroppedAndCountedNeverFatal) {
  EXPECT_FALSE(reactor_->SendMail(ConnectionId{}, Mail::Of(1)));         // no generation
  EXPECT_FALSE(reactor_->SendMail(ConnectionId{7, 0, 1}, Mail::Of(2)));  // another reactor's
  EXPECT_EQ(reactor_->Stats().mail_dropped_by_reason[static_cast<size_t>(MailDrop::kInvalidRef)],
            2u);
  auto [peer, id] = AddConnection();
  EXPECT_TRUE(reactor_->SendMail(id, Mail::Of(3)));  // the reactor still serves
  EXPECT_TRUE(WaitFor([&] { return reactor_->Stats().mail_delivered == 1; }));
}

// A handler driven by the test: hooks for data and mail.
class HookHandler final : public ConnectionHandler {
 public:
  struct Hooks {
    std::function<void(Connection&, std::string_view)> on_data;
    std::function<void(Connection&, Mail)> on_mail;
    std::function<void(CloseReason)> on_close;
  };
  explicit HookHandler(const Hooks& hooks) : hooks_(hooks) {}
  size_t OnData(Connection& conn, std::string_view data) override {
    if (hooks_.on_data) hooks_.on_data(conn, data);
    return data.size();
  }
  void OnMail(Connection& conn, Mail mail) override {
    if (hooks_.on_mail) hooks_.on_mail(conn, std::move(mail));
  }
  void OnClose(Connection&, CloseReason reason) override {
    if (hooks_.on_close) hooks_.on_close(reason);
  }

 private:
  const Hooks& hooks_;
};

// A running reactor with HookHandler connections over socketpairs.
class HookedReactor {
 public:
  explicit HookedReactor(const ReactorOptions& options, const HookHandler::Hooks& hooks)
      : reactor_(
            Reactor::Create(options,
                            [&hooks](Connection&) { return std::make_unique<HookHandler>(hooks); })
                .value()),
        thread_([this] { reactor_->Run(); }) {}
  ~HookedReactor() {
    reactor_->StopNow();
    thread_.join();
  }
  Reactor& reactor() { return *reactor_; }
  // The peer's end of a new connection (its id is slot order: 0, 1, ...).
  Fd Add() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    const uint64_t before = reactor_->AcceptedCount();
    HandoffToken token = reactor_->MakeHandoffToken();
    reactor_->Adopt(token, Handoff{sv[0], Address()});
    EXPECT_TRUE(WaitFor([&] { return reactor_->AcceptedCount() > before; }));
    return Fd(sv[1]);
  }
  size_t Closed(CloseReason reason) {
    return reactor_->Stats().closed_by_reason[static_cast<size_t>(reason)];
  }

 private:
  std::unique_ptr<Reactor> reactor_;
  std::thread thread_;
};

// Tasks are never counted in against the mail capacity, so they must not be
// counted out either: three tasks drained must not leave room for three more
// mails than the capacity allows.
TEST(ReactorLimitsTest, TasksLeaveTheMailCapacityAsItWas) {
  ReactorOptions options;
  options.inbox_mail_capacity = 4;
  auto reactor = Reactor::Create(options, [](Connection&) -> std::unique_ptr<ConnectionHandler> {
                   return nullptr;
                 }).value();
  std::atomic<int> ran{0};
  for (int i = 0; i < 3; ++i) reactor->Post([&] { ++ran; });
  std::thread t([&] { reactor->Run(); });
  ASSERT_TRUE(WaitFor([&] { return ran.load() == 3; }));
  // Hold the loop so that mail waits in the inbox.
  testing::Notification holding, release;
  reactor->Post([&] {
    holding.Notify();
    release.WaitForNotification();
  });
  holding.WaitForNotification();
  int accepted = 0;
  for (int i = 0; i < 8; ++i) accepted += reactor->SendMail(ConnectionId{0, 0, 1}, Mail::Of(i));
  EXPECT_EQ(accepted, 4);
  EXPECT_EQ(reactor->Stats().inbox_mail_depth, 4u);
  release.Notify();
  EXPECT_TRUE(WaitFor([&] { return reactor->Stats().inbox_mail_depth == 0; }));
  reactor->StopNow();
  t.join();
}

TEST(ReactorLimitsTest, InboxRefusesUserMailBeyondItsCapacityButNeverTasks) {
  ReactorOptions options;
  options.inbox_mail_capacity = 10;
  auto reactor = Reactor::Create(options, [](Connection&) -> std::unique_ptr<ConnectionHandler> {
                   return nullptr;
                 }).value();
  // Not running yet: everything waits in the inbox.
  int accepted = 0;
  for (int i = 0; i < 15; ++i) accepted += reactor->SendMail(ConnectionId{0, 0, 1}, Mail::Of(i));
  EXPECT_EQ(accepted, 10);
  // System mail (a reply an actor asked for) and tasks are bounded by their
  // askers, never refused.
  EXPECT_TRUE(reactor->SendMail(ConnectionId{0, 0, 1}, Mail::Of(99), MailClass::kSystem));
  std::atomic<bool> ran{false};
  reactor->Post([&] { ran = true; });
  ReactorStats stats = reactor->Stats();
  EXPECT_EQ(stats.inbox_mail_depth, 10u);
  EXPECT_EQ(stats.inbox_mail_depth_max, 10u);
  EXPECT_EQ(stats.mail_dropped_by_reason[static_cast<size_t>(MailDrop::kInboxFull)], 5u);
  std::thread t([&] { reactor->Run(); });
  EXPECT_TRUE(WaitFor([&] { return ran.load(); }));
  // Drained: the depth falls back and the queue takes mail again.
  EXPECT_TRUE(WaitFor([&] { return reactor->Stats().inbox_mail_depth == 0; }));
  EXPECT_TRUE(reactor->SendMail(ConnectionId{0, 0, 1}, Mail::Of(1)));
  EXPECT_EQ(reactor->Stats().inbox_mail_depth_max, 10u);
  reactor->StopNow();
  t.join();
}

TEST(ReactorLimitsTest, MailIsHandedOverInTheMailboxPhaseNeverInline) {
  HookHandler::Hooks hooks;
  std::atomic<int> got{0};
  std::atomic<bool> inline_delivery{false};
  bool in_send = false;  // loop thread only
  hooks.on_data = [&](Connection& conn, std::string_view) {
    in_send = true;
    EXPECT_TRUE(conn.reactor().DeliverMailInLoop(conn.id(), Mail::Of(1)));
    in_send = false;
  };
  hooks.on_mail = [&](Connection&, Mail) {
    if (in_send) inline_delivery = true;
    ++got;
  };
  HookedReactor r({}, hooks);
  Fd peer = r.Add();
  ASSERT_EQ(::send(peer.get(), "x", 1, 0), 1);
  ASSERT_TRUE(WaitFor([&] { return got.load() == 1; }));
  EXPECT_FALSE(inline_delivery.load());
}

// Fan-outs that arrive together (TryPostFanOut) reach a member as one batch
// of mail, which its connection writes once; a Post'ed task would hand over
// the mail before it first, one write per task.
TEST(ReactorLimitsTest, FanOutsArrivingTogetherAreHandedOverAsOneBatch) {
  HookHandler::Hooks hooks;
  std::mutex mu;
  std::optional<ConnectionId> id;
  hooks.on_data = [&](Connection& conn, std::string_view) {
    std::lock_guard<std::mutex> lock(mu);
    id = conn.id();
  };
  hooks.on_mail = [&](Connection& conn, Mail mail) {
    if (const std::string* text = mail.Get<std::string>()) conn.Send(*text);
  };
  HookedReactor r({}, hooks);
  Fd peer = r.Add();
  ASSERT_EQ(::send(peer.get(), "x", 1, 0), 1);
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(mu);
    return id.has_value();
  }));
  const ConnectionId to = *id;
  Reactor& reactor = r.reactor();
  testing::Notification holding, release;
  reactor.Post([&] {
    holding.Notify();
    release.WaitForNotification();
  });
  holding.WaitForNotification();
  const uint64_t writes_before = reactor.Stats().writes;
  for (const char* line : {"one\n", "two\n", "three\n"}) {
    ASSERT_TRUE(reactor.TryPostFanOut(
        [&reactor, to, line] { reactor.DeliverMailInLoop(to, Mail::Of(std::string(line))); }));
  }
  release.Notify();
  std::string got;
  ASSERT_TRUE(WaitFor([&] {
    char buf[64];
    const ssize_t n = ::recv(peer.get(), buf, sizeof(buf), 0);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    return got.size() >= 14;
  }));
  EXPECT_EQ(got, "one\ntwo\nthree\n");
  EXPECT_EQ(reactor.Stats().writes - writes_before, 1u);
}

TEST(ReactorLimitsTest, FailedAdoptionCountsAsClosed) {
  // A socket the reactor cannot register (epoll refuses a regular file)
  // must still count as released, or the server's open count (and the
  // max_connections gate built on it) drifts up for good.
  HookHandler::Hooks hooks;
  HookedReactor r({}, hooks);
  char path[] = "/tmp/troupe-reactor-test-XXXXXX";
  const int file = ::mkstemp(path);
  ASSERT_GE(file, 0);
  ::unlink(path);
  HandoffToken token = r.reactor().MakeHandoffToken();
  r.reactor().Adopt(token, Handoff{file, Address()});
  EXPECT_TRUE(WaitFor([&] { return r.reactor().ClosedCount() == 1; }));
  EXPECT_EQ(r.reactor().Stats().handoffs_dropped, 1u);
  EXPECT_EQ(r.reactor().AcceptedCount(), 0u);
}

TEST(ReactorLimitsTest, DrainAdoptsHandoffsStillQueued) {
  // A socket handed over just before the drain began must be closed like
  // every other connection (FIN after discarding its input), not left to
  // the destructor, whose close() on unread input sends RST.
  auto reactor = Reactor::Create({}, [](Connection&) {
                   return std::make_unique<RecordingHandlerStub>();
                 }).value();
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  Fd peer(sv[1]);
  ASSERT_EQ(::send(peer.get(), "unread", 6, 0), 6);
  HandoffToken token = reactor->MakeHandoffToken();
  // Both run in one inbox batch: the handoff lands after this turn's
  // handoff phase, right before the drain.
  reactor->Post([&] { reactor->Adopt(token, Handoff{sv[0], Address()}); });
  reactor->Drain(absl::Now() + absl::Seconds(20));
  std::thread t([&] { reactor->Run(); });
  pollfd p{peer.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 20000), 1) << "no FIN from the drain";
  char byte;
  EXPECT_EQ(::recv(peer.get(), &byte, 1, 0), 0) << std::strerror(errno);  // FIN, not RST
  peer.Reset();
  t.join();
  EXPECT_EQ(reactor->Stats().closed_by_reason[static_cast<size_t>(CloseReason::kFlushedClose)], 1u);
}

// Reads from a non-blocking `fd` until EOF (true) or 20 s; what came first
// lands in `got`.
bool ReadUntilEof(int fd, std::string& got) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  char buf[256];
  while (absl::Now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) < 0 && errno != EINTR) return false;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0) return true;
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
  }
  return false;
}

TEST(ReactorLimitsTest, HandoffQueuedAtDrainStartIsAnsweredBeforeItsFin) {
  // A connection accepted just before accepting stopped (a takeover's last
  // accepts) with its request already sent: the drain must answer it, then
  // FIN. Closing it first would put it in the lingering state, which reads
  // only to discard: a FIN and no answer.
  HookHandler::Hooks hooks;
  hooks.on_data = [](Connection& conn, std::string_view data) { conn.Send(data); };
  auto reactor = Reactor::Create({}, [&hooks](Connection&) {
                   return std::make_unique<HookHandler>(hooks);
                 }).value();
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  Fd peer(sv[1]);
  ASSERT_EQ(::send(peer.get(), "ping", 4, 0), 4);
  HandoffToken token = reactor->MakeHandoffToken();
  // One inbox batch: the handoff is still queued when the drain begins.
  reactor->Post([&] { reactor->Adopt(token, Handoff{sv[0], Address()}); });
  reactor->Drain(absl::Now() + absl::Seconds(20));
  std::thread t([&] { reactor->Run(); });
  std::string got;
  EXPECT_TRUE(ReadUntilEof(peer.get(), got)) << "no FIN from the drain";
  EXPECT_EQ(got, "ping");
  peer.Reset();
  t.join();
}

TEST(ReactorLimitsTest, HandoffDuringTheDrainIsAnsweredBeforeItsFin) {
  // The same for a socket handed over while the drain is under way (it waits
  // for another connection to finish): adopted late, answered all the same.
  HookHandler::Hooks hooks;
  hooks.on_data = [](Connection& conn, std::string_view data) { conn.Send(data); };
  ReactorOptions options;
  options.connection.linger_timeout = absl::Seconds(60);
  HookedReactor r(options, hooks);
  Fd stays = r.Add();  // its lingering keeps the drain going until we close it
  r.reactor().Drain(absl::Now() + absl::Seconds(20));
  std::string none;
  ASSERT_TRUE(ReadUntilEof(stays.get(), none)) << "the drain never began";
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  Fd peer(sv[1]);
  ASSERT_EQ(::send(peer.get(), "late", 4, 0), 4);
  HandoffToken token = r.reactor().MakeHandoffToken();
  r.reactor().Adopt(token, Handoff{sv[0], Address()});
  std::string got;
  EXPECT_TRUE(ReadUntilEof(peer.get(), got)) << "no FIN from the drain";
  EXPECT_EQ(got, "late");
  peer.Reset();
  stays.Reset();
}

TEST(ReactorLimitsTest, DeadlineEntriesFollowLiveConnectionsNotChurn) {
  ReactorOptions options;
  options.idle_timeout = absl::Seconds(60);
  HookHandler::Hooks hooks;
  hooks.on_data = [](Connection& conn, std::string_view) { conn.CloseAfterFlush(); };
  HookedReactor r(options, hooks);
  std::vector<Fd> peers;
  for (int i = 0; i < 50; ++i) peers.push_back(r.Add());
  EXPECT_EQ(r.reactor().Stats().deadline_entries, 50u);
  // Half close from the peer's side, half go through CloseAfterFlush and a
  // quick peer close (the linger): none may leave a deadline behind.
  for (size_t i = 0; i < peers.size(); ++i) {
    if (i % 2 == 0) {
      peers[i].Reset();
    } else {
      ASSERT_EQ(::send(peers[i].get(), "bye", 3, 0), 3);
    }
  }
  ASSERT_TRUE(WaitFor([&] { return r.Closed(CloseReason::kPeerClosed) == 25; }));
  for (size_t i = 1; i < peers.size(); i += 2) {
    pollfd p{peers[i].get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 20000), 1);  // our FIN
    peers[i].Reset();
  }
  ASSERT_TRUE(WaitFor([&] { return r.Closed(CloseReason::kFlushedClose) == 25; }));
  const ReactorStats stats = r.reactor().Stats();
  EXPECT_EQ(stats.deadline_entries, 0u);
  EXPECT_EQ(stats.timers, 0u);  // no linger timer waits out its 5 s either
}

TEST(ReactorLimitsTest, CloseAfterFlushIsBoundedWhileOutputIsQueued) {
  // A peer that never reads must not hold a closing connection forever: the
  // flush gives up after flush_timeout.
  ReactorOptions options;
  options.connection.flush_timeout = absl::Milliseconds(200);
  options.connection.max_output_bytes = 64 << 20;
  HookHandler::Hooks hooks;
  hooks.on_data = [](Connection& conn, std::string_view) {
    conn.Send(std::string(16 << 20, 'x'));  // far more than the socket buffers hold
    conn.CloseAfterFlush();
  };
  HookedReactor r(options, hooks);
  Fd peer = r.Add();
  ASSERT_EQ(::send(peer.get(), "go", 2, 0), 2);
  EXPECT_TRUE(WaitFor([&] { return r.Closed(CloseReason::kFlushTimeout) == 1; }));
}

TEST(ReactorLimitsTest, OutputThatDoesNotComeFromReadingIsCapped) {
  // Mail-driven output to a peer that never reads: reading is not what
  // fills the buffer, so only the hard cap can stop it.
  ReactorOptions options;
  options.connection.max_output_bytes = 4 << 20;
  HookHandler::Hooks hooks;
  std::atomic<int> behind_seen{0};
  hooks.on_mail = [&](Connection& conn, Mail) {
    if (conn.behind()) ++behind_seen;
    conn.Send(std::string(256 << 10, 'y'));
  };
  HookedReactor r(options, hooks);
  Fd peer = r.Add();
  const ConnectionId id{0, 0, 1};
  for (int i = 0; i < 200; ++i) r.reactor().SendMail(id, Mail::Of(i));  // 50 MiB if uncapped
  ASSERT_TRUE(WaitFor([&] { return r.Closed(CloseReason::kSlowConsumer) == 1; }));
  EXPECT_GT(behind_seen.load(), 0);  // the handler could have seen it coming
}

// --- Outbound connections (Reactor::Connect) --------------------------------

// What one dial-out saw, in order: "result", "open", "close:<reason>".
struct DialJournal {
  testing::Mutex mu;
  std::vector<std::string> events ABSL_GUARDED_BY(mu);
  std::optional<absl::StatusOr<ConnectionId>> result ABSL_GUARDED_BY(mu);
  std::string received ABSL_GUARDED_BY(mu);
  bool result_inline ABSL_GUARDED_BY(mu) = false;  // came inside Connect()
  testing::Notification result_ready;

  std::vector<std::string> Events() {
    testing::MutexLock lock(&mu);
    return events;
  }
  absl::StatusOr<ConnectionId> Result() {
    testing::MutexLock lock(&mu);
    return result.value_or(absl::InternalError("no result"));
  }
  std::string Received() {
    testing::MutexLock lock(&mu);
    return received;
  }
};

// The client side: sends `greeting` on open, keeps what it receives.
class DialHandler final : public ConnectionHandler {
 public:
  DialHandler(DialJournal& journal, std::string greeting)
      : journal_(journal), greeting_(std::move(greeting)) {}
  void OnOpen(Connection& conn) override {
    Record("open");
    if (!greeting_.empty()) conn.Send(greeting_);
  }
  size_t OnData(Connection&, std::string_view data) override {
    testing::MutexLock lock(&journal_.mu);
    journal_.received.append(data);
    return data.size();
  }
  void OnClose(Connection&, CloseReason reason) override {
    Record(absl::StrCat("close:", CloseReasonName(reason)));
  }

 private:
  void Record(std::string event) {
    testing::MutexLock lock(&journal_.mu);
    journal_.events.push_back(std::move(event));
  }
  DialJournal& journal_;
  const std::string greeting_;
};

// A running reactor that dials out; it accepts nothing itself. Declared
// after what its handlers and tasks write to (journals), so that it stops first.
class DialingReactor {
 public:
  explicit DialingReactor(const ReactorOptions& options = {})
      : reactor_(Reactor::Create(
                     options, [](Connection&) { return std::make_unique<RecordingHandlerStub>(); })
                     .value()),
        thread_([this] { reactor_->Run(); }) {}
  ~DialingReactor() { Stop(); }
  void Stop() {
    if (!thread_.joinable()) return;
    reactor_->StopNow();
    thread_.join();
  }
  // Returns once Run() has ended by itself (a drain), within 20 s.
  bool Joined() {
    testing::Notification ended;
    std::thread waiter([&] {
      thread_.join();
      ended.Notify();
    });
    const bool ok = ended.WaitForNotificationWithTimeout(absl::Seconds(20));
    if (!ok) reactor_->StopNow();  // let the waiter finish
    waiter.join();
    return ok;
  }
  Reactor& reactor() { return *reactor_; }
  // Connect() from a task on the loop, then `after` in the same task.
  ConnectionId Dial(const Address& to, absl::Duration timeout, DialJournal& journal,
                    std::string greeting = "",
                    std::function<void(Reactor&, ConnectionId)> after = nullptr) {
    testing::Notification dialed;
    ConnectionId id;
    reactor_->Post([&] {
      id = reactor_->Connect(to, timeout, std::make_unique<DialHandler>(journal, greeting),
                             [&journal](absl::StatusOr<ConnectionId> result) {
                               {
                                 testing::MutexLock lock(&journal.mu);
                                 journal.events.push_back("result");
                                 journal.result = std::move(result);
                               }
                               journal.result_ready.Notify();
                             });
      {
        testing::MutexLock lock(&journal.mu);
        journal.result_inline = journal.result.has_value();
      }
      if (after) after(*reactor_, id);
      dialed.Notify();
    });
    EXPECT_TRUE(dialed.WaitForNotificationWithTimeout(absl::Seconds(20)));
    return id;
  }
  uint64_t Closed(CloseReason reason) {
    return reactor_->Stats().closed_by_reason[static_cast<size_t>(reason)];
  }

 private:
  std::unique_ptr<Reactor> reactor_;
  std::thread thread_;
};

// A listening socket on 127.0.0.1 that the test accepts from itself.
struct LoopbackListener {
  Fd fd;
  Address address;
};
LoopbackListener Listen(int backlog = SOMAXCONN) {
  LoopbackListener l;
  l.fd = ListenTcp(Address::Parse("127.0.0.1:0").value(), {.backlog = backlog}).value();
  l.address = LocalAddress(l.fd.get()).value();
  return l;
}

// The next connection on `listener`, within 20 s (invalid if none came).
Fd AcceptOne(const LoopbackListener& listener) {
  pollfd p{listener.fd.get(), POLLIN, 0};
  if (::poll(&p, 1, 20000) != 1) return Fd();
  return Fd(::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
}

// Reads from a blocking socket until `n` bytes came, EOF, or 20 s passed.
std::string ReadUpTo(int fd, size_t n) {
  std::string out;
  char buf[4096];
  while (out.size() < n) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20000) != 1) break;
    const ssize_t got = ::recv(fd, buf, std::min(sizeof(buf), n - out.size()), 0);
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

// True if the peer's next event, within 20 s, is its FIN.
bool ReadsEof(int fd) {
  pollfd p{fd, POLLIN, 0};
  char byte;
  return ::poll(&p, 1, 20000) == 1 && ::recv(fd, &byte, 1, 0) == 0;
}

// A listener whose accept queue is full and stays full (backlog 0, connects
// never accepted, until one of them hangs): the kernel drops the SYNs of any
// further connect, so that connect cannot complete.
struct FullListener {
  LoopbackListener listener;
  std::vector<Fd> queued;
};
FullListener FullBacklog() {
  FullListener full{Listen(/*backlog=*/0), {}};
  for (int i = 0; i < 16; ++i) {
    Fd fd = ConnectTcpNonBlocking(full.listener.address).value();
    pollfd p{fd.get(), POLLOUT, 0};
    const bool hung = ::poll(&p, 1, 200) == 0;
    full.queued.push_back(std::move(fd));
    if (hung) return full;
  }
  ADD_FAILURE() << "the accept queue of a backlog-0 listener never filled";
  return full;
}

TEST(ReactorConnectTest, DialsOutAndEchoesThroughTheConnection) {
  DialJournal journal;
  DialingReactor r;
  LoopbackListener listener = Listen();
  const ConnectionId id = r.Dial(listener.address, absl::Seconds(20), journal, "ping\n");
  EXPECT_TRUE(id.valid());
  Fd peer = AcceptOne(listener);
  ASSERT_TRUE(peer.valid());
  // The peer echoes what the client's OnOpen sent.
  ASSERT_EQ(ReadUpTo(peer.get(), 5), "ping\n");
  ASSERT_EQ(::send(peer.get(), "ping\n", 5, 0), 5);
  ASSERT_TRUE(WaitFor([&] { return journal.Received() == "ping\n"; }));
  ASSERT_TRUE(journal.result_ready.HasBeenNotified());
  absl::StatusOr<ConnectionId> result = journal.Result();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, id);
  // The result comes first, then the handler's OnOpen.
  EXPECT_EQ(journal.Events(), (std::vector<std::string>{"result", "open"}));
  peer.Reset();  // EOF: the default OnPeerClosed flushes and closes
  ASSERT_TRUE(WaitFor([&] { return r.Closed(CloseReason::kPeerClosed) == 1; }));
  EXPECT_TRUE(WaitFor([&] { return journal.Events().size() == 3; }));
  EXPECT_EQ(journal.Events().back(), "close:peer_closed");
}

TEST(ReactorConnectTest, AClosedPortFailsNamingTheAddressWithNoHandlerCall) {
  Address closed_port = Listen().address;  // the listener is closed again at once
  DialJournal journal;
  DialingReactor r;
  r.Dial(closed_port, absl::Seconds(20), journal);
  ASSERT_TRUE(journal.result_ready.WaitForNotificationWithTimeout(absl::Seconds(20)));
  absl::StatusOr<ConnectionId> result = journal.Result();
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(absl::StrContains(result.status().message(), closed_port.ToString()))
      << result.status();
  EXPECT_TRUE(absl::StrContains(result.status().message(), std::strerror(ECONNREFUSED)))
      << result.status();
  EXPECT_EQ(r.Closed(CloseReason::kConnectFailed), 1u);
  // The result callback was all anyone heard: no OnOpen, no OnClose.
  EXPECT_EQ(journal.Events(), std::vector<std::string>{"result"});
  const ReactorStats stats = r.reactor().Stats();
  EXPECT_EQ(stats.connects, 1u);
  EXPECT_EQ(stats.connected, 0u);
  EXPECT_EQ(stats.outbound_closed, 1u);
  EXPECT_EQ(stats.outbound_open, 0u);
  EXPECT_EQ(stats.closed, 0u);
}

TEST(ReactorConnectTest, AConnectThatCannotCompleteTimesOut) {
  FullListener full = FullBacklog();
  DialJournal journal;
  DialingReactor r;
  const absl::Time start = absl::Now();
  r.Dial(full.listener.address, absl::Milliseconds(200), journal);
  ASSERT_TRUE(journal.result_ready.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
  absl::StatusOr<ConnectionId> result = journal.Result();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded) << result.status();
  EXPECT_TRUE(absl::StrContains(result.status().message(), full.listener.address.ToString()))
      << result.status();
  EXPECT_EQ(r.Closed(CloseReason::kConnectTimeout), 1u);
  EXPECT_EQ(journal.Events(), std::vector<std::string>{"result"});
  EXPECT_EQ(r.reactor().Stats().deadline_entries, 0u);
}

TEST(ReactorConnectTest, SendBeforeOpenIsQueuedAndFlushedAtOpen) {
  // A client writes its request at once and asks for the close right after:
  // all of it goes out once the connection opens, then the FIN.
  DialJournal journal;
  DialingReactor r;
  LoopbackListener listener = Listen();
  std::atomic<bool> was_connecting{false};
  r.Dial(listener.address, absl::Seconds(20), journal, "", [&](Reactor& reactor, ConnectionId id) {
    Connection* conn = reactor.Find(id);
    ASSERT_NE(conn, nullptr);
    was_connecting = conn->connecting();
    conn->Send("hello ");
    conn->Send({"pie", "ces\n"});
    conn->CloseAfterFlush();
  });
  EXPECT_TRUE(was_connecting.load());
  Fd peer = AcceptOne(listener);
  ASSERT_TRUE(peer.valid());
  EXPECT_EQ(ReadUpTo(peer.get(), 13), "hello pieces\n");
  EXPECT_TRUE(ReadsEof(peer.get()));
  peer.Reset();
  EXPECT_TRUE(WaitFor([&] { return r.Closed(CloseReason::kFlushedClose) == 1; }));
  // Counted at the close; OnClose follows at the end of that turn.
  EXPECT_TRUE(WaitFor([&] { return journal.Events().size() == 3; }));
  EXPECT_TRUE(journal.Result().ok()) << journal.Result().status();
  EXPECT_EQ(journal.Events(), (std::vector<std::string>{"result", "open", "close:flushed_close"}));
}

TEST(ReactorConnectTest, CloseWhileConnectingCancelsTheAttempt) {
  FullListener full = FullBacklog();  // it stays connecting
  DialJournal journal;
  DialingReactor r;
  r.Dial(full.listener.address, absl::Seconds(20), journal, "",
         [](Reactor& reactor, ConnectionId id) { reactor.Find(id)->Close(); });
  ASSERT_TRUE(journal.result_ready.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(journal.Result().status().code(), absl::StatusCode::kCancelled)
      << journal.Result().status();
  EXPECT_EQ(r.Closed(CloseReason::kLocalClose), 1u);
  EXPECT_EQ(journal.Events(), std::vector<std::string>{"result"});
}

TEST(ReactorConnectTest, AFailureInsideConnectIsReportedLaterNeverInline) {
  // An address of no family: socket() itself fails, inside Connect().
  DialJournal journal;
  DialingReactor r;
  const ConnectionId id = r.Dial(Address(), absl::Seconds(20), journal);
  ASSERT_TRUE(journal.result_ready.WaitForNotificationWithTimeout(absl::Seconds(20)));
  {
    testing::MutexLock lock(&journal.mu);
    EXPECT_FALSE(journal.result_inline);
  }
  EXPECT_TRUE(id.valid());
  absl::StatusOr<ConnectionId> result = journal.Result();
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(absl::StrContains(result.status().message(), "socket for")) << result.status();
  EXPECT_EQ(r.Closed(CloseReason::kConnectFailed), 1u);
  EXPECT_EQ(journal.Events(), std::vector<std::string>{"result"});
  testing::Notification checked;
  std::atomic<bool> found{true};
  r.reactor().Post([&] {
    found = r.reactor().Find(id) != nullptr;
    checked.Notify();
  });
  ASSERT_TRUE(checked.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_FALSE(found.load());
}

TEST(ReactorConnectTest, OutboundConnectionsAreCountedApartFromAccepted) {
  // One accepted connection (a socketpair handed over) and one dialed out:
  // `open` and ClosedCount() (the max_connections gate) see only the first.
  DialJournal journal;
  DialingReactor r;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  Fd inbound_peer(sv[1]);
  HandoffToken token = r.reactor().MakeHandoffToken();
  r.reactor().Adopt(token, Handoff{sv[0], Address()});
  LoopbackListener listener = Listen();
  r.Dial(listener.address, absl::Seconds(20), journal);
  Fd outbound_peer = AcceptOne(listener);
  ASSERT_TRUE(outbound_peer.valid());
  ASSERT_TRUE(WaitFor([&] { return r.reactor().Stats().connected == 1; }));
  ASSERT_TRUE(WaitFor([&] { return r.reactor().AcceptedCount() == 1; }));
  ReactorStats stats = r.reactor().Stats();
  EXPECT_EQ(stats.open, 1u);
  EXPECT_EQ(stats.outbound_open, 1u);
  EXPECT_EQ(stats.connects, 1u);
  ServerStats server;
  server.reactors.push_back(stats);
  const std::string body = RenderPrometheus(server, true);
  EXPECT_TRUE(absl::StrContains(body, "troupe_outbound_connects_total{reactor=\"0\"} 1"));
  EXPECT_TRUE(absl::StrContains(body, "troupe_outbound_connected_total{reactor=\"0\"} 1"));
  EXPECT_TRUE(absl::StrContains(body, "troupe_outbound_open{reactor=\"0\"} 1"));
  EXPECT_TRUE(absl::StrContains(body, "troupe_connections_open{reactor=\"0\"} 1"));
  // The dialed one closes: the inbound books do not move.
  outbound_peer.Reset();
  ASSERT_TRUE(WaitFor([&] { return r.reactor().Stats().outbound_closed == 1; }));
  stats = r.reactor().Stats();
  EXPECT_EQ(stats.open, 1u);
  EXPECT_EQ(stats.closed, 0u);
  EXPECT_EQ(r.reactor().ClosedCount(), 0u);
  EXPECT_EQ(stats.outbound_open, 0u);
  inbound_peer.Reset();
  ASSERT_TRUE(WaitFor([&] { return r.reactor().ClosedCount() == 1; }));
  stats = r.reactor().Stats();
  uint64_t by_reason = 0;
  for (uint64_t n : stats.closed_by_reason) by_reason += n;
  EXPECT_EQ(stats.accepted + stats.connects, stats.open + stats.outbound_open + by_reason);
  EXPECT_EQ(stats.open, 0u);
}

TEST(ReactorConnectTest, DrainFlushesOpenOutboundConnectionsAndCancelsConnectingOnes) {
  DialJournal open_one;
  DialJournal connecting;
  DialingReactor r;
  LoopbackListener listener = Listen();
  r.Dial(listener.address, absl::Seconds(20), open_one);
  Fd peer = AcceptOne(listener);
  ASSERT_TRUE(peer.valid());
  ASSERT_TRUE(open_one.result_ready.WaitForNotificationWithTimeout(absl::Seconds(20)));
  FullListener full = FullBacklog();
  r.Dial(full.listener.address, absl::Seconds(60), connecting);
  r.reactor().Drain(absl::Now() + absl::Seconds(60));
  // The open one is flushed and closed like an accepted one: our FIN...
  EXPECT_TRUE(ReadsEof(peer.get()));
  // ...and the one still connecting is cancelled, not waited for.
  ASSERT_TRUE(connecting.result_ready.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(connecting.Result().status().code(), absl::StatusCode::kCancelled)
      << connecting.Result().status();
  peer.Reset();
  EXPECT_TRUE(r.Joined()) << "the drain did not end";
  EXPECT_EQ(r.Closed(CloseReason::kFlushedClose), 1u);
  EXPECT_EQ(r.Closed(CloseReason::kShutdown), 1u);
  EXPECT_EQ(connecting.Events(), std::vector<std::string>{"result"});
}

TEST(ReactorConnectTest, StopNowCancelsAConnectStillInProgress) {
  FullListener full = FullBacklog();
  DialJournal journal;
  DialingReactor r;
  r.Dial(full.listener.address, absl::Seconds(60), journal);
  r.Stop();
  ASSERT_TRUE(journal.result_ready.HasBeenNotified());
  EXPECT_EQ(journal.Result().status().code(), absl::StatusCode::kCancelled)
      << journal.Result().status();
  EXPECT_EQ(r.Closed(CloseReason::kShutdown), 1u);
  EXPECT_EQ(journal.Events(), std::vector<std::string>{"result"});
}

TEST(ReactorConnectTest, AResultCallbackThatRedialsAtOnceCannotHoldTheLoop) {
  // Each attempt fails inside Connect() (an address of no family) and its
  // result, delivered in the reap, dials again. The first result posts a
  // task that stops the chain: the reap must yield for it to run.
  constexpr int kCap = 100000;  // where the chain stops if nothing else does
  std::atomic<int> attempts{0};
  std::atomic<bool> stop{false};
  testing::Notification done;
  DialingReactor r;
  std::function<void()> dial = [&] {
    ++attempts;
    r.reactor().Connect(Address(), absl::Seconds(1), std::make_unique<RecordingHandlerStub>(),
                        [&](absl::StatusOr<ConnectionId>) {
                          if (attempts.load() == 1) r.reactor().Post([&] { stop = true; });
                          if (stop.load() || attempts.load() >= kCap) {
                            done.Notify();
                          } else {
                            dial();
                          }
                        });
  };
  r.reactor().Post([&] { dial(); });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_TRUE(stop.load());
  EXPECT_LT(attempts.load(), 1000);
}

TEST(ReactorAffinityDeathTest, SendOffLoopThreadAborts) {
  EXPECT_DEATH(
      {
        // Bounded either way: if the misuse does not abort, the statement
        // stops the reactor and returns (the death test then fails), and an
        // alarm kills a child stuck anywhere (it then dies of SIGALRM,
        // without the expected message, which fails too).
        ::alarm(30);
        Journal journal;
        std::atomic<Connection*> captured{nullptr};
        // Capture a connection pointer, then misuse it from this thread.
        auto r2 = Reactor::Create({}, [&](Connection& conn) {
                    captured = &conn;
                    return std::make_unique<RecordingHandler>(journal);
                  }).value();
        std::thread t([&] { r2->Run(); });
        int sv[2];
        ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
        HandoffToken token = r2->MakeHandoffToken();
        r2->Adopt(token, Handoff{sv[0], Address()});
        WaitFor([&] { return captured.load() != nullptr; });
        if (Connection* conn = captured.load()) conn->Send("boom");  // not the loop thread
        r2->StopNow();
        t.join();
      },
      "off its loop thread");
}

}  // namespace
}  // namespace troupe
