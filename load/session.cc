#include "load/session.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/net/socket.h"

namespace troupe::load {
namespace {

// Bytes per send() at most: one contiguous range of the stream.
constexpr size_t kSendChunk = kStreamChunk;

// LoadOptions::reconnect's backoff: short enough that a drained node's
// connections are back on another within a few round trips of the load
// balancer, long enough that a server which accepts and closes at once does
// not turn the client into a connect loop; doubling to a second while
// nothing comes back.
constexpr int64_t kMinBackoffNs = 10'000'000;
constexpr int64_t kMaxBackoffNs = 1'000'000'000;

// "what: strerror text", as absl::ErrnoToStatus words it. Used on worker
// threads instead of it: the distribution's Abseil is not built with
// ThreadSanitizer, and the lazily built table behind its StrError() shows up
// as a race between the first two threads that fail.
std::string ErrnoMessage(int error, absl::string_view what) {
  char text[256];
  return absl::StrCat(what, ": ", ::strerror_r(error, text, sizeof(text)));
}

}  // namespace

void Session::Init(int index, uint64_t seed, size_t local, int64_t* issue_times) {
  index_ = index;
  local_ = local;
  seed_ = seed;
  issue_times_ = issue_times;
}

std::optional<std::string> Session::OpenSocket(const Address& target, const Address* source,
                                               int epoll_fd) {
  absl::StatusOr<Fd> fd = ConnectTcpNonBlocking(target, source);
  if (!fd.ok()) return std::string(fd.status().message());
  fd_ = *std::move(fd);
  // Edge-triggered: the session always reads and writes until EAGAIN (or a
  // short read, see ReadAndVerify), so it never needs epoll_ctl again.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = local_;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd_.get(), &ev) != 0) {
    return ErrnoMessage(errno, "epoll_ctl ADD");
  }
  state_ = SessionState::kConnecting;
  return std::nullopt;
}

bool Session::StartConnect(SessionContext& context, const Address& target, const Address* source,
                           int epoll_fd) {
  if (std::optional<std::string> error = OpenSocket(target, source, epoll_fd)) {
    FailConnect(context, *error);
    return false;
  }
  return true;
}

void Session::StartReconnect(SessionContext& context, const Address& target, const Address* source,
                             int epoll_fd, int64_t now) {
  if (std::optional<std::string> error = OpenSocket(target, source, epoll_fd)) {
    FailReconnect(context, *error, now);
    return;
  }
  // Saturating: an infinite connect timeout is INT64_MAX nanoseconds.
  reconnect_at_ns_ =
      now + std::min(context.connect_timeout_ns, std::numeric_limits<int64_t>::max() - now);
}

Session::Handshake Session::AdvanceHandshake(SessionContext& context, const Address& target,
                                             uint32_t events, std::string* error) {
  if (ssl_ == nullptr) {
    int code = 0;
    socklen_t len = sizeof(code);
    if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &code, &len) != 0) {
      code = errno;
    }
    // Neither writable nor failed: the TCP handshake is still under way.
    if (code == 0 && (events & EPOLLOUT) == 0) return Handshake::kPending;
    if (code != 0) {
      *error = ErrnoMessage(code, absl::StrCat("connect ", target.ToString()));
      return Handshake::kFailed;
    }
    if (context.tls == nullptr) return Handshake::kOpen;
    ssl_ = context.tls->NewConnection(fd_.get());
    if (ssl_ == nullptr) {
      *error = "TLS: cannot create a connection's state";
      return Handshake::kFailed;
    }
  }
  // Every event advances it: SSL_connect reads and writes until the socket
  // says EAGAIN, so the next edge (in or out, as it asks) comes.
  ERR_clear_error();
  const int r = SSL_connect(ssl_.get());
  if (r == 1) return Handshake::kOpen;
  const int ssl_error = SSL_get_error(ssl_.get(), r);
  if (ssl_error == SSL_ERROR_WANT_READ || ssl_error == SSL_ERROR_WANT_WRITE) {
    return Handshake::kPending;
  }
  tls_failed_ = true;
  *error = TlsErrorText(ssl_.get(), r, absl::StrCat("TLS handshake with ", target.ToString()));
  return Handshake::kFailed;
}

bool Session::FinishConnect(SessionContext& context, const Address& target, uint32_t events) {
  std::string error;
  switch (AdvanceHandshake(context, target, events, &error)) {
    case Handshake::kPending:
      return false;
    case Handshake::kOpen:
      state_ = SessionState::kOpen;
      ++context.open;
      context.tally.Established();
      return true;
    case Handshake::kFailed:
      break;
  }
  FailConnect(context, error);
  return true;
}

void Session::ResetSocket() {
  ssl_.reset();  // SSL_set_fd leaves the descriptor to us
  tls_write_len_ = 0;
  tls_failed_ = false;
  fd_.Reset();
}

void Session::FailConnect(SessionContext& context, absl::string_view why) {
  context.tally.ConnectFailed(why);
  ResetSocket();
  state_ = SessionState::kClosed;
}

void Session::FinishReconnect(SessionContext& context, const Address& target, uint32_t events,
                              int64_t now) {
  std::string error;
  switch (AdvanceHandshake(context, target, events, &error)) {
    case Handshake::kPending:
      return;
    case Handshake::kFailed:
      FailReconnect(context, error, now);
      return;
    case Handshake::kOpen:
      break;
  }
  state_ = SessionState::kOpen;
  ++context.open;
  failed_attempts_ = 0;
  last_failure_.clear();
  context.tally.Reconnected();
  if (context.draining) {
    // Up again, and owing nothing: the drain only wanted to see it open.
    Close(context);
    return;
  }
  // A fresh stream; the old one's counts went to the tally in EndStream.
  Issue(context, now);
  // Reads what came with the handshake's edge (a server that closes at once
  // raises no second one), then sends.
  HandleEvent(context, events, now);
}

void Session::FailReconnect(SessionContext& context, absl::string_view why, int64_t now) {
  context.tally.ReconnectFailed();
  ++failed_attempts_;
  last_failure_ = std::string(why);
  ResetSocket();
  state_ = SessionState::kBackoff;
  ScheduleReconnect(now);
}

void Session::ReconnectNow(int64_t now) {
  if (state_ == SessionState::kBackoff) reconnect_at_ns_ = std::min(reconnect_at_ns_, now);
}

void Session::GiveUpReconnecting(SessionContext& context, bool down) {
  std::string message;
  if (down) {
    message = absl::StrFormat("connection %d down: not open again by the end of the run", index_);
    if (failed_attempts_ > 0) {
      absl::StrAppendFormat(&message, " (%d reconnect attempts failed; last: %s)", failed_attempts_,
                            last_failure_);
    }
  }
  context.tally.StopReconnecting(down, std::move(message));
  ResetSocket();
  state_ = SessionState::kClosed;
}

void Session::ScheduleReconnect(int64_t now) {
  if (backoff_ns_ == 0) backoff_ns_ = kMinBackoffNs;
  // Anywhere in the upper half of the backoff, by a hash of the connection
  // and the attempt: a node's connections all closed at once must not all
  // come back in the same SYN burst, and a rerun waits the same.
  const uint64_t hash = (SeedOf(index_) + failed_attempts_ + 1) * 0x9E3779B97F4A7C15ULL;
  const int64_t half = backoff_ns_ / 2;
  reconnect_at_ns_ = now + half + static_cast<int64_t>((hash >> 33) % static_cast<uint64_t>(half));
  backoff_ns_ = std::min(backoff_ns_ * 2, kMaxBackoffNs);
}

void Session::HandleEvent(SessionContext& context, uint32_t events, int64_t now) {
  if (state_ != SessionState::kOpen) return;
  // TLS reads on every event: a read that wanted to write waits for EPOLLOUT.
  if ((ssl_ != nullptr || (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) &&
      !ReadAndVerify(context, events, now)) {
    return;
  }
  if (context.draining) {
    if (AllEchoed()) Close(context);
    return;
  }
  // Sends the messages just issued, or resumes a send the kernel cut short.
  Flush(context);
}

bool Session::Received(SessionContext& context, const uint8_t* data, size_t n, int64_t now) {
  if (std::optional<std::string> error =
          CheckEcho(index_, context.stream.At(seed_, received_), received_, sent_, data, n)) {
    // One report per connection: after a mismatch the stream is out of
    // step, and every later byte would be reported too.
    context.tally.VerificationFailed(*std::move(error));
    Close(context);
    return false;
  }
  // The new stream works: the next outage backs off from the start.
  if (received_ == 0) backoff_ns_ = 0;
  received_ += static_cast<uint64_t>(n);
  progress_ns_ = now;
  if (!context.draining && now >= context.measure_start_ns) {
    context.tally.MeasuredBytes(static_cast<uint64_t>(n));
  }
  CompleteMessages(context, now);
  return state_ == SessionState::kOpen;  // Not when the script finished.
}

bool Session::ReadTlsAndVerify(SessionContext& context, int64_t now) {
  // Until OpenSSL wants more from the socket: a record read whole may leave
  // others in the socket (no new edge for them) or decrypted bytes in
  // OpenSSL (SSL_pending), so the short-read shortcut does not apply.
  uint8_t* const buffer = context.read_buffer.get();
  for (;;) {
    ERR_clear_error();
    const int n = SSL_read(ssl_.get(), buffer, static_cast<int>(kReadChunk));
    if (n > 0) {
      if (!Received(context, buffer, static_cast<size_t>(n), now)) return false;
      continue;
    }
    const int ssl_error = SSL_get_error(ssl_.get(), n);
    if (ssl_error == SSL_ERROR_WANT_READ || ssl_error == SSL_ERROR_WANT_WRITE) return true;
    if (ssl_error == SSL_ERROR_ZERO_RETURN) {
      // close_notify: the server's orderly end, like a FIN in plaintext.
      PeerGone(context, "peer closed the connection (close_notify)", /*clean=*/true);
      return false;
    }
    tls_failed_ = true;
    // A FIN without close_notify lands here too: a cut stream, not a close.
    PeerGone(context, TlsErrorText(ssl_.get(), n, "TLS read"), /*clean=*/false);
    return false;
  }
}

bool Session::ReadAndVerify(SessionContext& context, uint32_t events, int64_t now) {
  if (ssl_ != nullptr) return ReadTlsAndVerify(context, now);
  // A short read means the receive queue was empty; with EPOLLET any byte
  // arriving later raises a new event, so reading on to EAGAIN would only
  // cost a syscall. A pending FIN or error raises no new edge, though, so
  // then read until recv() reports it.
  const bool read_to_end = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
  uint8_t* const buffer = context.read_buffer.get();
  for (;;) {
    const ssize_t n = ::recv(fd_.get(), buffer, kReadChunk, 0);
    if (n > 0) {
      if (!Received(context, buffer, static_cast<size_t>(n), now)) return false;
      if (static_cast<size_t>(n) < kReadChunk && !read_to_end) return true;
      continue;
    }
    if (n == 0) {
      PeerGone(context, "peer closed the connection", /*clean=*/true);
      return false;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    PeerGone(context, ErrnoMessage(errno, "recv"), /*clean=*/false);
    return false;
  }
}

void Session::CompleteMessages(SessionContext& context, int64_t now) {
  const uint64_t done = context.stream.CompletedBy(received_, completed_);
  if (done == completed_) return;
  if (!context.draining) {
    const bool measured = now >= context.measure_start_ns;
    for (uint64_t m = completed_; m < done; ++m) {
      const int64_t issued_at = issue_times_[m % context.pipeline];
      context.tally.Completed(static_cast<uint64_t>(std::max<int64_t>(now - issued_at, 0)),
                              measured);
      if (send_times_ != nullptr && measured) {
        const int64_t sent_at = send_times_[m % context.pipeline];
        context.tally.CompletedSinceSend(
            static_cast<uint64_t>(std::max<int64_t>(now - sent_at, 0)));
      }
    }
  }
  completed_ = done;
  if (context.stream.script_mode() && done == context.stream.message_count()) {
    // All echoed: the script is over for this connection (a FIN, since
    // nothing is left unread).
    Close(context);
    return;
  }
  if (!context.draining) Issue(context, now);
}

bool Session::Issue(SessionContext& context, int64_t now) {
  // Closed loop: a message is issued when one completes, so there are always
  // `pipeline` in flight. Its latency includes time spent waiting for room
  // in the socket buffer, which is the server's back-pressure.
  uint64_t limit = completed_ + context.pipeline;
  if (context.stream.script_mode()) {
    limit = std::min(limit, context.stream.message_count());
  }
  // Owing nothing until now: the wait for an echo (a stall) starts here, not
  // at the last echo, which may be long ago in the open loop.
  if (!Owes(context)) progress_ns_ = now;
  const uint64_t before = issued_;
  if (context.open_loop.active()) {
    // Open loop: only what is due, stamped with when it was due. After a
    // reconnect the schedule goes on where the last stream left it.
    const uint64_t due = context.open_loop.DueCount(local_, now);
    limit = std::min(limit, due > schedule_base_ ? due - schedule_base_ : 0);
    for (; issued_ < limit; ++issued_) {
      issue_times_[issued_ % context.pipeline] =
          context.open_loop.DueTime(local_, schedule_base_ + issued_);
    }
  } else {
    for (; issued_ < limit; ++issued_) {
      issue_times_[issued_ % context.pipeline] = now;
    }
  }
  return issued_ != before;
}

void Session::FlushTls(SessionContext& context) {
  const uint64_t target = context.stream.EndOf(issued_);
  while (sent_ < target) {
    const uint8_t* from = context.stream.At(seed_, sent_);
    const size_t len = tls_write_len_ != 0
                           ? tls_write_len_
                           : static_cast<size_t>(std::min<uint64_t>(target - sent_, kSendChunk));
    ERR_clear_error();
    // Partial writes are on (SSL_MODE_ENABLE_PARTIAL_WRITE): each record
    // that went out counts.
    const int64_t send_at = SendClock(context, sent_ + len);
    const int n = SSL_write(ssl_.get(), from, static_cast<int>(len));
    if (n > 0) {
      sent_ += static_cast<uint64_t>(n);
      tls_write_len_ = 0;
      StampSends(context, send_at);
      continue;
    }
    const int ssl_error = SSL_get_error(ssl_.get(), n);
    if (ssl_error == SSL_ERROR_WANT_WRITE || ssl_error == SSL_ERROR_WANT_READ) {
      tls_write_len_ = len;  // The next event retries the very same write.
      return;
    }
    tls_failed_ = true;
    PeerGone(context, TlsErrorText(ssl_.get(), n, "TLS write"), /*clean=*/false);
    return;
  }
}

void Session::Flush(SessionContext& context) {
  if (ssl_ != nullptr) {
    FlushTls(context);
    return;
  }
  const uint64_t target = context.stream.EndOf(issued_);
  while (sent_ < target) {
    const uint8_t* from = context.stream.At(seed_, sent_);
    const size_t len = static_cast<size_t>(std::min<uint64_t>(target - sent_, kSendChunk));
    // MSG_NOSIGNAL: a peer reset is an error to count, not a SIGPIPE.
    const int64_t send_at = SendClock(context, sent_ + len);
    const ssize_t n = ::send(fd_.get(), from, len, MSG_NOSIGNAL);
    if (n >= 0) {
      sent_ += static_cast<uint64_t>(n);
      StampSends(context, send_at);
      continue;
    }
    if (errno == EINTR) continue;
    // EPOLLOUT (edge) resumes the send once the kernel has room.
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    PeerGone(context, ErrnoMessage(errno, "send"), /*clean=*/false);
    return;
  }
}

int64_t Session::SendClock(const SessionContext& context, uint64_t end) const {
  // Message k starts at stream offset EndOf(k). Read before the send()
  // rather than after: on loopback the echo can be back before send()
  // returns. One clock read per send() that may start a message, only in
  // the open loop.
  if (send_times_ == nullptr || started_ >= issued_ || context.stream.EndOf(started_) >= end) {
    return 0;
  }
  return MonotonicNanos();
}

void Session::StampSends(SessionContext& context, int64_t send_at) {
  if (send_times_ == nullptr) return;
  // The kernel has a message's first byte once sent_ is past its start.
  for (; started_ < issued_ && context.stream.EndOf(started_) < sent_; ++started_) {
    send_times_[started_ % context.pipeline] = send_at;
  }
}

void Session::PeerGone(SessionContext& context, absl::string_view why, bool clean) {
  // With reconnect, a FIN is how a drained server says goodbye: every byte
  // it echoed has been verified, and what it did not echo it never will.
  // That holds in the run's own drain too, where the session is not opened
  // again (it has nothing more to send): a rolling restart that overlaps
  // the end of a run must not fail it by chance.
  if (clean && context.reconnect) {
    if (context.draining) {
      context.tally.StreamEnded(sent_ - received_, issued_ - completed_);
      Close(context);
    } else {
      EndStream(context);
    }
    return;
  }
  if (context.draining) {
    // The peer may close first once everything is back; before that, it
    // took echoes with it.
    if (received_ < sent_) {
      Incomplete(context, why);
      return;
    }
    Close(context);
    return;
  }
  context.tally.Lost(
      absl::StrFormat("connection %d lost after %d bytes echoed: %s", index_, received_, why));
  EndStream(context);
}

void Session::EndStream(SessionContext& context) {
  if (!context.reconnect || context.draining) {
    Close(context);
    return;
  }
  context.tally.StreamEnded(sent_ - received_, issued_ - completed_);
  context.tally.ReconnectPending();
  Close(context);
  // Messages issued and abandoned keep their places in the open loop's
  // schedule; the ones due and not issued yet go out on the next stream.
  schedule_base_ += issued_;
  sent_ = 0;
  received_ = 0;
  issued_ = 0;
  completed_ = 0;
  started_ = 0;
  state_ = SessionState::kBackoff;
  ScheduleReconnect(MonotonicNanos());
  if (!listed_) {
    listed_ = true;
    context.reconnecting.push_back(local_);
  }
}

void Session::CheckStall(SessionContext& context, int64_t now, int64_t stall_ns,
                         absl::Duration stall_timeout) {
  if (state_ != SessionState::kOpen || !Owes(context)) return;
  if (now - progress_ns_ < stall_ns) return;
  std::string message = absl::StrFormat(
      "connection %d stalled: no byte received in %s with %d of %d sent "
      "bytes echoed",
      index_, absl::FormatDuration(stall_timeout), received_, sent_);
  const uint64_t unsent = context.stream.EndOf(issued_) - sent_;
  if (unsent > 0) {
    absl::StrAppendFormat(&message, " and %d more the kernel would not take", unsent);
  }
  context.tally.Stalled(std::move(message));
  // With reconnect, a hung node costs only this stream.
  EndStream(context);
}

void Session::TimeOut(SessionContext& context) {
  context.tally.TimedOut(absl::StrFormat("connection %d timed out after %d of %d messages echoed",
                                         index_, completed_, context.stream.message_count()));
  Close(context);
}

void Session::Incomplete(SessionContext& context, absl::string_view why) {
  std::string message = absl::StrFormat("connection %d incomplete: %d of %d sent bytes echoed",
                                        index_, received_, sent_);
  if (!why.empty()) absl::StrAppend(&message, " (", why, ")");
  context.tally.Incomplete(std::move(message));
  Close(context);
}

void Session::Close(SessionContext& context) {
  if (state_ == SessionState::kOpen) {
    --context.open;
    // close_notify before the FIN, best effort: one that does not fit in
    // the socket now is not waited for (all that was owed is back, or lost).
    if (ssl_ != nullptr && !tls_failed_) {
      ERR_clear_error();
      (void)SSL_shutdown(ssl_.get());
      ERR_clear_error();
    }
  }
  // close() also removes the descriptor from the epoll set.
  ResetSocket();
  state_ = SessionState::kClosed;
}

}  // namespace troupe::load
