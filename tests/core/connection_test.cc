// Connection on its own: driven over a socketpair by the test, with a
// ConnectionHost of the test's making and no Reactor, so each state change
// (read, write-through, backpressure, flush-then-FIN, the limits) is seen
// directly, through the host's requests and the connection's state.
#include "core/loop/connection.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace troupe {
namespace {

// Consumes whole lines and echoes them; keeps a partial line.
class LineEcho final : public ConnectionHandler {
 public:
  size_t OnData(Connection& conn, std::string_view data) override {
    const size_t end = data.rfind('\n');
    if (end == std::string_view::npos) return 0;
    conn.Send(data.substr(0, end + 1));
    return end + 1;
  }
  void OnPeerClosed(Connection& conn) override {
    peer_closed = true;
    conn.CloseAfterFlush();
  }
  void OnOutputDrained(Connection& conn) override {
    ++drained;
    drained_at = conn.pending_output();
  }
  bool peer_closed = false;
  int drained = 0;
  size_t drained_at = 0;
};

class ConnectionTest : public testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    peer_ = Fd(sv[1]);
    host_.BindToCurrentThread();
    conn_ = std::make_unique<Connection>(host_, nullptr, kId, Fd(sv[0]), Address());
    auto handler = std::make_unique<LineEcho>();
    handler_ = handler.get();
    conn_->set_handler(std::move(handler));
    conn_->OpenInLoop();
  }

  // What the peer can read now (non-blocking).
  std::string PeerReads() {
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = ::recv(peer_.get(), buf, sizeof(buf), 0)) > 0)
      out.append(buf, static_cast<size_t>(n));
    return out;
  }
  bool PeerSawEof() {
    char c;
    return ::recv(peer_.get(), &c, 1, 0) == 0;
  }
  void PeerWrites(std::string_view bytes) {
    ASSERT_EQ(::send(peer_.get(), bytes.data(), bytes.size(), 0),
              static_cast<ssize_t>(bytes.size()));
  }
  bool ClosedWith(CloseReason reason) {
    for (const ConnectionHost::Closing& c : host_.closing()) {
      if (c.id == kId && c.reason == reason) return true;
    }
    return false;
  }

  static constexpr ConnectionId kId{0, 3, 7};
  ConnectionOptions options_;
  ReactorCounters counters_;
  Timers timers_{Timers::GeometryFor({absl::Seconds(5)}), std::chrono::steady_clock::now()};
  ConnectionHost host_{options_, {}, 256 * 1024, timers_, counters_};
  Fd peer_;
  std::unique_ptr<Connection> conn_;
  LineEcho* handler_ = nullptr;
};

TEST_F(ConnectionTest, EchoesWholeLinesAndKeepsThePartialOne) {
  PeerWrites("one\ntw");
  conn_->HandleEventsInLoop(EPOLLIN);
  EXPECT_EQ(PeerReads(), "one\n");
  PeerWrites("o\n");
  conn_->HandleEventsInLoop(EPOLLIN);
  EXPECT_EQ(PeerReads(), "two\n");
  EXPECT_EQ(counters_.bytes_in.load(), 8u);
  EXPECT_EQ(counters_.bytes_out.load(), 8u);
  EXPECT_FALSE(conn_->closed());
}

TEST_F(ConnectionTest, PeerEofFlushesThenClosesWithPeerClosed) {
  PeerWrites("last\n");
  ASSERT_EQ(::shutdown(peer_.get(), SHUT_WR), 0);
  conn_->HandleEventsInLoop(EPOLLIN | EPOLLRDHUP);
  EXPECT_TRUE(handler_->peer_closed);
  EXPECT_TRUE(conn_->closed());
  EXPECT_TRUE(ClosedWith(CloseReason::kPeerClosed));
  EXPECT_EQ(PeerReads(), "last\n");  // the reply made it out before the close
  EXPECT_TRUE(PeerSawEof());
}

TEST_F(ConnectionTest, CloseAfterFlushSendsFinThenLingersUntilThePeerCloses) {
  conn_->Send("bye\n");
  conn_->CloseAfterFlush();
  EXPECT_EQ(conn_->state(), Connection::State::kLingering);
  EXPECT_EQ(PeerReads(), "bye\n");
  EXPECT_TRUE(PeerSawEof());  // our FIN
  // Input after the FIN is read and discarded, never handed to the handler.
  PeerWrites("ignored\n");
  conn_->HandleEventsInLoop(EPOLLIN);
  EXPECT_FALSE(conn_->closed());
  peer_.Reset();
  conn_->HandleEventsInLoop(EPOLLIN | EPOLLRDHUP);
  EXPECT_TRUE(ClosedWith(CloseReason::kFlushedClose));
}

TEST_F(ConnectionTest, OutputAboveTheHighWatermarkPausesReadingUntilItDrains) {
  // The peer does not read: the kernel buffers fill and output queues up.
  const std::string chunk(256 * 1024, 'x');
  while (!conn_->behind()) conn_->Send(chunk);
  EXPECT_GT(conn_->pending_output(), options_.high_watermark);
  // A request now is left in the socket: reading is paused.
  PeerWrites("more\n");
  conn_->HandleEventsInLoop(EPOLLIN);
  EXPECT_TRUE(host_.read_backlog().empty());
  // The peer drains everything; the next EPOLLOUT empties the queue and asks
  // the loop to read again (no new edge will come for bytes already there).
  while (conn_->pending_output() > 0) {
    PeerReads();
    conn_->HandleEventsInLoop(EPOLLOUT);
  }
  ASSERT_EQ(host_.read_backlog().size(), 1u);
  EXPECT_EQ(host_.read_backlog()[0], kId);
  conn_->ReadAgainInLoop();
  // The tail of the bulk output may still be in flight ahead of the reply.
  std::string rest = PeerReads();
  for (int i = 0; i < 1000 && conn_->pending_output() > 0; ++i) {
    conn_->HandleEventsInLoop(EPOLLOUT);
    rest += PeerReads();
  }
  EXPECT_TRUE(rest.size() >= 5 && rest.compare(rest.size() - 5, 5, "more\n") == 0)
      << rest.size() << " bytes, not ending in the reply";
}

TEST_F(ConnectionTest, PauseReadingLeavesInputInTheSocketUntilResume) {
  conn_->PauseReading();
  PeerWrites("held\n");
  conn_->HandleEventsInLoop(EPOLLIN);
  EXPECT_EQ(PeerReads(), "");  // not read, so not echoed
  EXPECT_EQ(counters_.bytes_in.load(), 0u);
  // Resume asks the loop to read again: the edge was consumed while paused.
  conn_->ResumeReading();
  ASSERT_EQ(host_.read_backlog().size(), 1u);
  conn_->ReadAgainInLoop();
  EXPECT_EQ(PeerReads(), "held\n");
}

TEST_F(ConnectionTest, PausingMidReadKeepsTheRestOfTheInputForResume) {
  // A handler that pauses after the first line: the second waits in input_.
  class PauseAfterOne final : public ConnectionHandler {
   public:
    size_t OnData(Connection& conn, std::string_view data) override {
      const size_t end = data.find('\n');
      if (end == std::string_view::npos || conn.reading_paused()) return 0;
      conn.Send(data.substr(0, end + 1));
      conn.PauseReading();
      return end + 1;
    }
  };
  conn_->set_handler(std::make_unique<PauseAfterOne>());
  PeerWrites("a\nb\n");
  conn_->HandleEventsInLoop(EPOLLIN);
  EXPECT_EQ(PeerReads(), "a\n");
  conn_->ResumeReading();
  conn_->ReadAgainInLoop();  // hands the kept "b\n" over again
  EXPECT_EQ(PeerReads(), "b\n");
}

TEST_F(ConnectionTest, ShutdownWriteSendsFinAfterTheQueueAndKeepsReading) {
  conn_->Send("last\n");
  conn_->ShutdownWrite();
  EXPECT_EQ(PeerReads(), "last\n");
  EXPECT_TRUE(PeerSawEof());  // our FIN, after the queued bytes
  // The peer may still send; it is read (and an echo is not sent).
  PeerWrites("late\n");
  conn_->HandleEventsInLoop(EPOLLIN);
  EXPECT_EQ(counters_.bytes_in.load(), 5u);
  EXPECT_EQ(counters_.bytes_out.load(), 5u);
  EXPECT_FALSE(conn_->closed());
  // Its EOF ends the connection the usual way.
  ASSERT_EQ(::shutdown(peer_.get(), SHUT_WR), 0);
  conn_->HandleEventsInLoop(EPOLLIN | EPOLLRDHUP);
  EXPECT_TRUE(ClosedWith(CloseReason::kPeerClosed));
}

TEST_F(ConnectionTest, OnOutputDrainedFiresOnceWhenAPeerThatWasBehindCatchesUp) {
  conn_->Send("small\n");  // never behind: no call
  PeerReads();
  conn_->HandleEventsInLoop(EPOLLOUT);
  EXPECT_EQ(handler_->drained, 0);
  const std::string chunk(256 * 1024, 'x');
  while (!conn_->behind()) conn_->Send(chunk);
  for (int i = 0; i < 1000 && conn_->pending_output() > 0; ++i) {
    PeerReads();
    conn_->HandleEventsInLoop(EPOLLOUT);
  }
  // Not inside the write that drained it: in the read-backlog phase.
  EXPECT_EQ(handler_->drained, 0);
  ASSERT_FALSE(host_.read_backlog().empty());
  conn_->ReadAgainInLoop();
  EXPECT_EQ(handler_->drained, 1);
  EXPECT_LE(handler_->drained_at, options_.low_watermark);
}

TEST_F(ConnectionTest, AWritePastMaxOutputOnAConnectionBehindClosesItAsASlowConsumer) {
  const std::string chunk(512 * 1024, 'x');
  for (int i = 0; i < 64 && !conn_->closed(); ++i) conn_->Send(chunk);
  EXPECT_TRUE(conn_->closed());
  EXPECT_TRUE(ClosedWith(CloseReason::kSlowConsumer));
  EXPECT_LE(conn_->pending_output(), options_.max_output_bytes + chunk.size());
}

TEST_F(ConnectionTest, UnconsumedInputAboveTheLimitClosesIt) {
  options_.max_input_bytes = 1000;     // read through the host on every delivery
  PeerWrites(std::string(2000, 'a'));  // no newline: LineEcho keeps it all
  conn_->HandleEventsInLoop(EPOLLIN);
  EXPECT_TRUE(ClosedWith(CloseReason::kInputTooLarge));
}

TEST_F(ConnectionTest, APeerResetClosesItAsPeerReset) {
  // The peer closes with our bytes unread: the kernel resets the stream.
  conn_->Send("unread\n");
  peer_.Reset();
  conn_->HandleEventsInLoop(EPOLLIN | EPOLLOUT | EPOLLHUP);
  if (!conn_->closed()) conn_->Send("more\n");  // EPIPE, if the read saw no error
  EXPECT_TRUE(ClosedWith(CloseReason::kPeerReset));
}

TEST_F(ConnectionTest, CloseClearsTheDeadlineAndIsCountedOnce) {
  EXPECT_EQ(timers_.deadlines(), 0u);  // no idle timeout, no close pending
  conn_->CloseAfterFlush();            // a flush deadline, then a linger one
  EXPECT_EQ(timers_.deadlines(), 1u);
  conn_->Close();
  conn_->Close();
  EXPECT_EQ(timers_.deadlines(), 0u);
  EXPECT_EQ(counters_.closed.load(), 1u);
  EXPECT_EQ(host_.closing().size(), 1u);
}

// Output coalescing: the Sends a handler makes inside one callback leave in
// one write when it returns (see "Coalescing" in core/loop/connection.h).
// Each line read is answered with two Sends (text, then its newline), and
// `then` runs after the answers, inside the same OnData.
class PerLineSends final : public ConnectionHandler {
 public:
  size_t OnData(Connection& conn, std::string_view data) override {
    size_t used = 0;
    for (size_t end; (end = data.find('\n', used)) != std::string_view::npos; used = end + 1) {
      conn.Send(data.substr(used, end - used));
      conn.Send({std::string_view(), std::string_view("\n")});
      if (big > 0) {
        conn.Send(std::string(big, 'x'));
        big = 0;
      }
    }
    if (then) then(conn);
    return used;
  }
  void OnMail(Connection& conn, Mail mail) override {
    if (const std::string* text = mail.Get<std::string>()) conn.Send(*text);
  }
  std::function<void(Connection&)> then;
  size_t big = 0;  // once: a Send this large after the first line
};

class CoalescingTest : public ConnectionTest {
 protected:
  void SetUp() override {
    ConnectionTest::SetUp();
    auto handler = std::make_unique<PerLineSends>();
    lines_ = handler.get();
    conn_->set_handler(std::move(handler));
  }
  static std::string Lines(int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += "line " + std::to_string(i) + "\n";
    return out;
  }
  PerLineSends* lines_ = nullptr;
};

TEST_F(CoalescingTest, SixteenPipelinedRepliesLeaveInOneWrite) {
  PeerWrites(Lines(16));
  conn_->HandleEventsInLoop(EPOLLIN);
  EXPECT_EQ(PeerReads(), Lines(16));
  EXPECT_EQ(counters_.writes.load(), 1u);  // not 32
  // A lone reply leaves when its callback returns, too: nothing waits.
  PeerWrites("alone\n");
  conn_->HandleEventsInLoop(EPOLLIN);
  EXPECT_EQ(PeerReads(), "alone\n");
  EXPECT_EQ(counters_.writes.load(), 2u);
  EXPECT_EQ(conn_->pending_output(), 0u);
}

TEST_F(CoalescingTest, ASendLargerThanTheCorkGoesOutBehindWhatWasGathered) {
  lines_->big = 2 * ConnectionHost::kCorkBytes;
  PeerWrites(Lines(3));
  conn_->HandleEventsInLoop(EPOLLIN);
  const std::string expected =
      "line 0\n" + std::string(2 * ConnectionHost::kCorkBytes, 'x') + "line 1\nline 2\n";
  std::string got;
  for (int i = 0; i < 1000 && got.size() < expected.size(); ++i) {
    got += PeerReads();
    if (conn_->pending_output() > 0) conn_->HandleEventsInLoop(EPOLLOUT);
  }
  EXPECT_EQ(got, expected);  // in order, nothing lost or doubled
  EXPECT_FALSE(host_.cork().lent);
}

// What a callback has gathered counts as pending output, so a handler that
// sheds (TryWriteFrame) sees it behind before the cork is written.
TEST_F(CoalescingTest, GatheredBytesCountTowardBehind) {
  options_.high_watermark = 100;
  std::vector<std::pair<size_t, bool>> seen;
  lines_->then = [&seen](Connection& conn) {
    seen.emplace_back(conn.pending_output(), conn.behind());
  };
  PeerWrites(Lines(30));  // 30 lines of 7-8 bytes: 230 bytes gathered
  conn_->HandleEventsInLoop(EPOLLIN);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].first, Lines(30).size());
  EXPECT_TRUE(seen[0].second);
  EXPECT_EQ(PeerReads(), Lines(30));
  EXPECT_EQ(conn_->pending_output(), 0u);
  EXPECT_FALSE(conn_->behind());
}

TEST_F(CoalescingTest, CloseInsideTheCallbackStillSendsWhatWasGatheredOnce) {
  // As without the cork: replies sent before a Close (an error line, the
  // answers before a bad frame) reach the peer, then the close.
  lines_->then = [](Connection& conn) { conn.Close(); };
  PeerWrites(Lines(2));
  conn_->HandleEventsInLoop(EPOLLIN);
  EXPECT_TRUE(ClosedWith(CloseReason::kLocalClose));
  EXPECT_EQ(PeerReads(), Lines(2));
  EXPECT_TRUE(PeerSawEof());
  EXPECT_EQ(counters_.writes.load(), 1u);
  // The cork is free again for the reactor's other connections.
  EXPECT_FALSE(host_.cork().lent);
  EXPECT_EQ(host_.cork().size, 0u);
}

TEST_F(CoalescingTest, CloseAfterFlushInsideTheCallbackSendsWhatWasGatheredBeforeTheFin) {
  lines_->then = [](Connection& conn) { conn.CloseAfterFlush(); };
  PeerWrites(Lines(2));
  conn_->HandleEventsInLoop(EPOLLIN);
  EXPECT_EQ(conn_->state(), Connection::State::kLingering);
  EXPECT_EQ(PeerReads(), Lines(2));
  EXPECT_TRUE(PeerSawEof());
}

TEST_F(CoalescingTest, ShutdownWriteInsideTheCallbackSendsWhatWasGatheredBeforeTheFin) {
  lines_->then = [](Connection& conn) { conn.ShutdownWrite(); };
  PeerWrites(Lines(2));
  conn_->HandleEventsInLoop(EPOLLIN);
  EXPECT_FALSE(conn_->closed());
  EXPECT_EQ(PeerReads(), Lines(2));
  EXPECT_TRUE(PeerSawEof());
}

TEST_F(CoalescingTest, ABatchOfMailLeavesInOneWrite) {
  for (int i = 0; i < 10; ++i) {
    ASSERT_FALSE(conn_->EnqueueMailInLoop(Mail::Of(std::string("mail ") + std::to_string(i) + "\n"),
                                          MailClass::kUser));
  }
  conn_->HandOverMailInLoop(100);
  std::string expected;
  for (int i = 0; i < 10; ++i) expected += "mail " + std::to_string(i) + "\n";
  EXPECT_EQ(PeerReads(), expected);
  EXPECT_EQ(counters_.writes.load(), 1u);
}

TEST_F(CoalescingTest, ASendOutsideAnyCallbackWritesThroughAtOnce) {
  conn_->Send("now\n");
  EXPECT_EQ(PeerReads(), "now\n");
  EXPECT_EQ(counters_.writes.load(), 1u);
}

}  // namespace
}  // namespace troupe
