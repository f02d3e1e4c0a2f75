#include "core/loop/connection.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "absl/base/attributes.h"
#include "absl/strings/str_cat.h"
#include "core/base/check.h"
#include "core/base/deadline.h"
#include "core/base/log.h"

namespace troupe {
namespace {

// Send(pieces) over a transport joins pieces up to this size into one write
// (one TLS record, whose maximum this is); larger ones go piece by piece.
constexpr size_t kTransportJoinBytes = 16 << 10;
// The pieces one Send may write with one sendmsg (a frame header and its
// payload, ...); a corked Send adds what the cork gathered as one more.
constexpr size_t kMaxPieces = 8;
// A bound on what one plaintext Send becomes on the wire, for its admission
// under max_output_bytes: the plaintext plus, per TLS record (at most 16 KiB
// of plaintext), its header, tag, padding and MAC (under 64 bytes for every
// cipher suite OpenSSL offers).
constexpr size_t kTransportRecordBytes = 16 << 10;
constexpr size_t kTransportRecordOverhead = 64;

size_t TransportWireBound(size_t plain) {
  return plain + (plain / kTransportRecordBytes + 1) * kTransportRecordOverhead;
}

}  // namespace

const char* CloseReasonName(CloseReason reason) {
  switch (reason) {
    case CloseReason::kPeerClosed:
      return "peer_closed";
    case CloseReason::kPeerReset:
      return "peer_reset";
    case CloseReason::kSocketError:
      return "socket_error";
    case CloseReason::kLocalClose:
      return "local_close";
    case CloseReason::kFlushedClose:
      return "flushed_close";
    case CloseReason::kLingerTimeout:
      return "linger_timeout";
    case CloseReason::kInputTooLarge:
      return "input_too_large";
    case CloseReason::kProtocolError:
      return "protocol_error";
    case CloseReason::kHandlerError:
      return "handler_error";
    case CloseReason::kShutdown:
      return "shutdown";
    case CloseReason::kIdleTimeout:
      return "idle_timeout";
    case CloseReason::kSlowConsumer:
      return "slow_consumer";
    case CloseReason::kFlushTimeout:
      return "flush_timeout";
    case CloseReason::kMailboxOverflow:
      return "mailbox_overflow";
    case CloseReason::kConnectFailed:
      return "connect_failed";
    case CloseReason::kConnectTimeout:
      return "connect_timeout";
    case CloseReason::kProxyHeaderInvalid:
      return "proxy_header_invalid";
    case CloseReason::kProxyHeaderTimeout:
      return "proxy_header_timeout";
    case CloseReason::kTlsHandshakeFailed:
      return "tls_handshake_failed";
    case CloseReason::kTlsHandshakeTimeout:
      return "tls_handshake_timeout";
    case CloseReason::kTlsError:
      return "tls_error";
    case CloseReason::kCount:
      break;
  }
  return "unknown";
}

void ConnectionHandler::OnPeerClosed(Connection& conn) { conn.CloseAfterFlush(); }

Connection::Connection(ConnectionHost& host, Reactor* owner, ConnectionId id, Fd fd, Address peer)
    : host_(host),
      owner_(owner),
      id_(id),
      fd_(std::move(fd)),
      peer_(std::move(peer)),
      options_(host.options()),
      last_active_(host.now()) {}

Connection::~Connection() = default;

Reactor& Connection::reactor() const {
  TROUPE_CHECK(owner_ != nullptr, "this connection has no Reactor (a test's own host)");
  return *owner_;
}

void Connection::set_peer_in_loop(Address peer) {
  host_.AssertInLoopThread();
  peer_ = std::move(peer);
}

void Connection::set_transport_in_loop(std::unique_ptr<Transport> transport) {
  host_.AssertInLoopThread();
  TROUPE_CHECK(!opened_ && !outbound_ && state_ == State::kOpen,
               "a transport goes on an accepted connection before it opens");
  transport_ = std::move(transport);
}

void Connection::OpenInLoop() {
  if (transport_ != nullptr) {
    // The handshake first: FinishHandshakeInLoop gives the handler OnOpen.
    if (IsFiniteTimeout(options_.handshake_timeout)) {
      close_deadline_ = DeadlineAfter(host_.now(), options_.handshake_timeout);
    }
    ScheduleDeadlineInLoop();
    return;
  }
  ScheduleDeadlineInLoop();
  opened_ = true;
  handler_->OnOpen(*this);
}

void Connection::ConnectInLoop(absl::Duration timeout, ConnectCallback on_result) {
  host_.AssertInLoopThread();
  state_ = State::kConnecting;
  outbound_ = true;
  // EPOLLOUT says the connect completed: until then every Send() queues.
  write_blocked_ = true;
  dial_ = std::make_unique<Dial>(Dial{timeout, std::move(on_result), absl::OkStatus()});
  if (IsFiniteTimeout(timeout)) {
    close_deadline_ = DeadlineAfter(host_.now(), timeout);
    ScheduleDeadlineInLoop();
  }
}

void Connection::FailConnectInLoop(absl::Status error, CloseReason reason) {
  if (closed()) return;
  if (dial_ != nullptr) dial_->error = std::move(error);
  Close(reason);
}

bool Connection::FinishConnectInLoop(uint32_t events) {
  // Nothing else is reported for a socket whose connect is in progress.
  if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return false;
  int error = 0;
  socklen_t len = sizeof(error);
  if (::getsockopt(fd(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
  if (error == 0 && (events & EPOLLOUT) == 0) error = ENOTCONN;  // hung up, no reason given
  if (error != 0) {
    FailConnectInLoop(absl::ErrnoToStatus(error, absl::StrCat("connect ", peer_.ToString())),
                      CloseReason::kConnectFailed);
    return false;
  }
  state_ = State::kOpen;
  ReactorCounters::Bump(host_.counters().connected);
  close_deadline_ = SteadyClock::time_point::max();  // the connect's; idle from now on
  last_active_ = host_.now();
  ConnectCallback on_result;
  if (dial_ != nullptr) on_result = std::move(dial_->on_result);
  dial_.reset();
  // The result first, so that whoever asked knows the id before the handler
  // can act on it (OnOpen may send mail naming it, or close it).
  if (on_result) std::move(on_result)(id_);
  if (closed()) return false;  // the asker closed it: the handler hears nothing
  OpenInLoop();
  if (closed()) return false;
  if (!mailbox_.empty()) ScheduleMailInLoop();  // mail that waited for the open
  if (flush_at_open_) {
    flush_at_open_ = false;
    CloseAfterFlush();
  }
  return !closed();
}

void Connection::FinishInLoop(CloseReason reason) {
  if (opened_) {
    if (handler_ != nullptr) handler_->OnClose(*this, reason);
    return;
  }
  if (dial_ == nullptr || !dial_->on_result) return;
  absl::Status error = std::move(dial_->error);
  if (error.ok()) {
    // Closed while connecting by something other than the connect itself.
    const std::string what = absl::StrCat("connect ", peer_.ToString());
    switch (reason) {
      case CloseReason::kLocalClose:
        error = absl::CancelledError(absl::StrCat(what, ": closed before it opened"));
        break;
      case CloseReason::kShutdown:
        error = absl::CancelledError(absl::StrCat(what, ": the reactor is stopping"));
        break;
      default:
        error = absl::AbortedError(
            absl::StrCat(what, ": closed before it opened (", CloseReasonName(reason), ")"));
        break;
    }
  }
  ConnectCallback on_result = std::move(dial_->on_result);
  dial_.reset();
  std::move(on_result)(std::move(error));
}

void Connection::HandleEventsInLoop(uint32_t events) {
  if (state_ == State::kConnecting) {
    if (!FinishConnectInLoop(events)) return;
    // Bytes may have come with the handshake (a server that speaks first):
    // read them now rather than trust this event to say so.
    events |= EPOLLIN;
  }
  if (events & EPOLLERR) {
    int error = 0;
    socklen_t len = sizeof(error);
    ::getsockopt(fd(), SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0) {
      FailInLoop(error);
      return;
    }
  }
  if ((events & EPOLLOUT) && write_blocked_) WriteInLoop();
  if (closed()) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
    // With RDHUP/HUP pending, a short read does not mean "drained": the EOF
    // is still to be read, so read on until EAGAIN or 0.
    const bool until_eagain = (events & (EPOLLRDHUP | EPOLLHUP)) != 0;
    if (ReadInLoop(host_.read_budget(), until_eagain)) ScheduleReadInLoop();
  }
}

void Connection::ReadAgainInLoop() {
  in_read_backlog_ = false;
  if (closed()) return;
  if (drained_due_) {
    // Here, not inside the Send that drained the output: the handler gets
    // one callback at a time.
    drained_due_ = false;
    if (state_ == State::kOpen) handler_->OnOutputDrained(*this);
    if (closed()) return;
  }
  // The edge was consumed earlier, so read until EAGAIN this time.
  if (ReadInLoop(host_.read_budget(), /*until_eagain=*/true)) ScheduleReadInLoop();
}

void Connection::ScheduleReadInLoop() {
  if (in_read_backlog_) return;
  in_read_backlog_ = true;
  host_.ReadAgain(id_);
}

bool Connection::ReadInLoop(size_t budget, bool until_eagain) {
  // Not connected yet: recv would fail (ENOTCONN); the open reads.
  if (state_ == State::kConnecting) return false;
  char* const scratch = host_.scratch();
  constexpr size_t kScratch = ConnectionHost::kScratchBytes;
  if (redeliver_input_ && !user_paused_) {
    // Requests that waited at max_pending_work, already read: offer them
    // again before reading more.
    redeliver_input_ = false;
    if (state_ == State::kOpen && !close_requested_ && !input_.empty()) {
      DeliverInLoop(0, /*into_input=*/true);
      if (closed()) return false;
    }
  }
  if (transport_ != nullptr) return ReadTransportInLoop(budget, until_eagain);
  while (!closed() && !peer_eof_) {
    // Closing, waiting for owed replies: nothing new is read (the drain
    // flushes what was read, not what is yet to come).
    if (close_requested_ && state_ == State::kOpen) return false;
    if (state_ == State::kOpen && user_paused_) return false;  // ResumeReading reads again
    if (state_ == State::kOpen && work_full()) {
      paused_for_work_ = true;  // FinishPendingWork resumes
      return false;
    }
    if (state_ == State::kOpen && output_.size() > options_.high_watermark) {
      read_paused_ = true;  // WriteInLoop resumes below the low watermark
      return false;
    }
    // A partial frame waits in input_: read straight behind it, with the
    // scratch buffer catching the overflow (muduo's readv trick). Otherwise
    // read into scratch only, so a connection between messages owns no
    // input memory at all.
    const bool into_input = !input_.empty() && state_ == State::kOpen;
    size_t asked;
    ssize_t n;
    if (into_input) {
      iovec iov[2] = {{input_.writable_data(), input_.writable_size()}, {scratch, kScratch}};
      asked = iov[0].iov_len + kScratch;
      n = ::readv(fd(), iov, 2);
    } else {
      asked = kScratch;
      n = ::recv(fd(), scratch, kScratch, 0);
    }
    if (n > 0) {
      ReactorCounters::Bump(host_.counters().bytes_in, static_cast<size_t>(n));
      last_active_ = host_.now();
      // Flushing or lingering: input is read only to be discarded.
      if (state_ == State::kOpen) DeliverInLoop(static_cast<size_t>(n), into_input);
      // Edge-triggered epoll reports the next arrival, so a read that came
      // back short has emptied the socket: skip the extra recv that would
      // only say EAGAIN.
      if (static_cast<size_t>(n) < asked && !until_eagain) return false;
      if (static_cast<size_t>(n) >= budget) return !closed() && !peer_eof_;
      budget -= static_cast<size_t>(n);
    } else if (n == 0) {
      OnPeerEofInLoop();
      return false;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return false;
    } else {
      FailInLoop(errno);
      return false;
    }
  }
  return false;
}

void Connection::DeliverInLoop(size_t n, bool into_input) {
  const char* const scratch = host_.scratch();
  if (into_input) {
    const size_t direct = std::min(n, input_.writable_size());
    input_.Commit(direct);
    if (n > direct) input_.Append(std::string_view(scratch, n - direct));
    CorkInLoop();
    const size_t used = handler_->OnData(*this, input_.view());
    UncorkInLoop();
    if (closed()) return;
    TROUPE_CHECK(used <= input_.size(), "OnData consumed more than it got");
    input_.Consume(used);
  } else {
    const std::string_view fresh(scratch, n);
    CorkInLoop();
    const size_t used = handler_->OnData(*this, fresh);
    UncorkInLoop();
    if (closed()) return;
    TROUPE_CHECK(used <= n, "OnData consumed more than it got");
    input_.Append(fresh.substr(used));
  }
  CheckInputInLoop();
}

void Connection::CheckInputInLoop() {
  // The handler stopped at max_pending_work: what it left waits (and no
  // more is read) until FinishPendingWork makes room.
  if (work_full()) paused_for_work_ = true;
  if (input_.empty()) {
    if (input_.capacity() > options_.retained_buffer_bytes) input_.Release();
  } else if (input_.size() > options_.max_input_bytes) {
    // A framing handler may legitimately wait for more (its largest frame).
    const size_t limit = std::max(options_.max_input_bytes, handler_->input_limit());
    if (input_.size() > limit) {
      TROUPE_LOG_EVERY_SECOND(kWarning,
                              "closing %s: %d unconsumed input bytes exceed the limit of %d",
                              peer_.ToString(), input_.size(), limit);
      Close(CloseReason::kInputTooLarge);
    }
  }
}

// Inlined into Send, so that a connection without a transport runs the code
// it always ran; the transport's sink calls it too.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void Connection::SendRawInLoop(std::string_view bytes,
                                                                   bool admitted) {
  if (output_.empty() && !write_blocked_) {
    // Write-through: most small replies leave in this one syscall, without
    // touching the output buffer or waiting for EPOLLOUT.
    ssize_t n;
    do {
      n = ::send(fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    ReactorCounters::Bump(host_.counters().writes);
    if (n >= 0) {
      ReactorCounters::Bump(host_.counters().bytes_out, static_cast<size_t>(n));
      last_active_ = host_.now();
      bytes.remove_prefix(static_cast<size_t>(n));
      if (bytes.empty()) return;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      write_blocked_ = true;
    } else {
      FailInLoop(errno);
      return;
    }
  }
  // A transport's sink: its plaintext Send was admitted as a whole.
  if (!admitted && !QueueOutput(bytes.size())) return;
  output_.Append(bytes);
  if (output_.size() > options_.high_watermark) was_behind_ = true;
  // After a partial write, try once more: EPOLLOUT is only promised after
  // the kernel has said EAGAIN.
  if (!write_blocked_) WriteInLoop();
}

void Connection::Send(std::string_view bytes) {
  host_.AssertInLoopThread();
  if ((state_ != State::kOpen && state_ != State::kConnecting) || bytes.empty()) return;
  if (write_shut_requested_) return;  // ShutdownWrite: nothing more goes out
  if (transport_ != nullptr) {
    SendTransportInLoop(bytes);
    return;
  }
  if (corked_ && SendCorkedInLoop(&bytes, 1, bytes.size())) return;
  SendRawInLoop(bytes, /*admitted=*/false);
}

bool Connection::QueueOutput(size_t bytes) {
  // Only a connection already behind is cut: one large reply to a peer that
  // keeps up is the handler's own (bounded) message, not a slow consumer.
  if (output_.size() <= options_.high_watermark ||
      output_.size() + bytes <= options_.max_output_bytes) {
    return true;
  }
  TROUPE_LOG_EVERY_SECOND(kWarning,
                          "closing %s: slow consumer, %d bytes of output queued and %d more "
                          "would pass the limit of %d",
                          peer_.ToString(), output_.size(), bytes, options_.max_output_bytes);
  Close(CloseReason::kSlowConsumer);
  return false;
}

void Connection::Send(std::initializer_list<std::string_view> pieces) {
  host_.AssertInLoopThread();
  if (state_ != State::kOpen && state_ != State::kConnecting) return;
  if (write_shut_requested_) return;
  size_t total = 0;
  for (std::string_view piece : pieces) total += piece.size();
  if (transport_ != nullptr) {
    // One record for a frame header and its payload, not one each (a small
    // frame would double its bytes on the wire); a large one goes piecewise.
    if (total > kTransportJoinBytes) {
      for (std::string_view piece : pieces) Send(piece);
      return;
    }
    // Joined on the stack: no allocation per message.
    char joined[kTransportJoinBytes];
    size_t at = 0;
    for (std::string_view piece : pieces) {
      if (!piece.empty()) std::memcpy(joined + at, piece.data(), piece.size());
      at += piece.size();
    }
    Send(std::string_view(joined, total));
    return;
  }
  if (pieces.size() <= kMaxPieces) {
    if (corked_ && SendCorkedInLoop(pieces.begin(), pieces.size(), total)) return;
    if (output_.empty() && !write_blocked_) {
      SendPiecesInLoop(pieces.begin(), pieces.size(), total);
      return;
    }
  }
  for (std::string_view piece : pieces) Send(piece);
}

void Connection::SendPiecesInLoop(const std::string_view* pieces, size_t count, size_t total) {
  iovec iov[kMaxPieces + 1];
  TROUPE_CHECK(count <= kMaxPieces + 1, "too many pieces for one write");
  for (size_t i = 0; i < count; ++i) {
    iov[i] = {const_cast<char*>(pieces[i].data()), pieces[i].size()};
  }
  msghdr message{};
  message.msg_iov = iov;
  message.msg_iovlen = count;
  ssize_t n;
  do {
    n = ::sendmsg(fd(), &message, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  ReactorCounters::Bump(host_.counters().writes);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      FailInLoop(errno);
      return;
    }
    n = 0;
    write_blocked_ = true;
  }
  ReactorCounters::Bump(host_.counters().bytes_out, static_cast<size_t>(n));
  if (n > 0) last_active_ = host_.now();
  if (static_cast<size_t>(n) == total) return;
  if (!QueueOutput(total - static_cast<size_t>(n))) return;
  // Queue what the kernel did not take, piece by piece.
  size_t skip = static_cast<size_t>(n);
  for (size_t i = 0; i < count; ++i) {
    if (skip >= pieces[i].size()) {
      skip -= pieces[i].size();
      continue;
    }
    output_.Append(pieces[i].substr(skip));
    skip = 0;
  }
  if (output_.size() > options_.high_watermark) was_behind_ = true;
  if (!write_blocked_) WriteInLoop();
}

void Connection::CorkInLoop() {
  ConnectionHost::Cork& cork = host_.cork();
  if (transport_ != nullptr || cork.lent) return;
  cork.lent = true;
  corked_ = true;
}

void Connection::UncorkInLoop() {
  if (!corked_) return;
  // Closed meanwhile: what was gathered goes, as queued output would.
  if (!closed()) FlushCorkInLoop();
  ConnectionHost::Cork& cork = host_.cork();
  cork.size = 0;
  cork.lent = false;
  corked_ = false;
}

bool Connection::SendCorkedInLoop(const std::string_view* pieces, size_t count, size_t total) {
  // Output already queued (or a blocked socket): these bytes queue behind
  // it without a write anyway. The cork is then empty (it only gathers
  // while output_ is), so order holds.
  if (!output_.empty() || write_blocked_) return false;
  ConnectionHost::Cork& cork = host_.cork();
  if (cork.size + total <= ConnectionHost::kCorkBytes) {
    for (size_t i = 0; i < count; ++i) {
      if (pieces[i].empty()) continue;
      std::memcpy(cork.data + cork.size, pieces[i].data(), pieces[i].size());
      cork.size += pieces[i].size();
    }
    return true;
  }
  // Too much to gather: what was gathered, then these, in one write; a large
  // piece is not copied.
  std::string_view all[kMaxPieces + 1];
  size_t n = 0;
  if (cork.size > 0) all[n++] = std::string_view(cork.data, cork.size);
  for (size_t i = 0; i < count; ++i) all[n++] = pieces[i];
  const size_t gathered = cork.size;
  cork.size = 0;  // its bytes stay put until the write below has copied what it leaves
  SendPiecesInLoop(all, n, gathered + total);
  return true;
}

void Connection::FlushCorkInLoop() {
  if (!corked_) return;
  ConnectionHost::Cork& cork = host_.cork();
  if (cork.size == 0) return;
  const std::string_view gathered(cork.data, cork.size);
  cork.size = 0;
  SendRawInLoop(gathered, /*admitted=*/false);
}

void Connection::WriteInLoop() {
  write_blocked_ = false;
  while (!output_.empty()) {
    const ssize_t n = ::send(fd(), output_.data(), output_.size(), MSG_NOSIGNAL);
    ReactorCounters::Bump(host_.counters().writes);
    if (n > 0) {
      ReactorCounters::Bump(host_.counters().bytes_out, static_cast<size_t>(n));
      last_active_ = host_.now();
      output_.Consume(static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      write_blocked_ = true;
      break;
    } else {
      FailInLoop(n < 0 ? errno : EPIPE);
      return;
    }
  }
  if (read_paused_ && output_.size() <= options_.low_watermark) {
    // Reading stopped with bytes possibly left in the socket and no new
    // edge to come: go back for them on the next turn.
    read_paused_ = false;
    ScheduleReadInLoop();
  }
  if (was_behind_ && output_.size() <= options_.low_watermark && state_ == State::kOpen) {
    // OnOutputDrained runs in the read-backlog phase: this may be inside
    // one of the handler's own Sends.
    was_behind_ = false;
    drained_due_ = true;
    ScheduleReadInLoop();
  }
  if (!output_.empty()) return;
  if (output_.capacity() > options_.retained_buffer_bytes) output_.Release();
  if (state_ == State::kFlushing) FinishFlushInLoop();
  if (write_shut_requested_ && !write_shut_ && state_ == State::kOpen) {
    ::shutdown(fd(), SHUT_WR);
    write_shut_ = true;
  }
}

void Connection::Close(CloseReason reason) {
  host_.AssertInLoopThread();
  if (closed()) return;
  if (corked_) {
    // What the handler sent before it closed (an error line, the replies
    // before a bad frame) gets the one try write-through would have given
    // it; only output the kernel refused is dropped.
    ConnectionHost::Cork& cork = host_.cork();
    if (cork.size > 0 && output_.empty() && !write_blocked_) {
      const ssize_t n = ::send(fd(), cork.data, cork.size, MSG_NOSIGNAL | MSG_DONTWAIT);
      ReactorCounters::Bump(host_.counters().writes);
      if (n > 0) ReactorCounters::Bump(host_.counters().bytes_out, static_cast<size_t>(n));
    }
    cork.size = 0;
  }
  state_ = State::kClosed;
  // Closing the only descriptor also removes it from the epoll set.
  fd_.Reset();
  // Mail still waiting dies with the actor, counted (and bounced).
  host_.DropWaiting(
      mailbox_, id_,
      reason == CloseReason::kMailboxOverflow ? MailDrop::kActorClosed : MailDrop::kGone);
  host_.Closed(id_, reason, outbound_);
}

void Connection::SetOpeningDeadline(absl::Duration timeout, CloseReason reason) {
  host_.AssertInLoopThread();
  if (state_ != State::kOpen || closing() || !IsFiniteTimeout(timeout)) return;
  opening_deadline_ = true;
  opening_reason_ = reason;
  close_deadline_ = DeadlineAfter(host_.now(), timeout);
  ScheduleDeadlineInLoop();
}

void Connection::ClearOpeningDeadline() {
  host_.AssertInLoopThread();
  if (!opening_deadline_) return;
  opening_deadline_ = false;
  close_deadline_ = SteadyClock::time_point::max();
  ScheduleDeadlineInLoop();
}

void Connection::CloseAfterFlush() {
  host_.AssertInLoopThread();
  if (state_ == State::kConnecting) {
    flush_at_open_ = true;  // the open flushes what was queued meanwhile
    return;
  }
  if (handshaking()) {
    // No FIN inside a handshake (a drain): it takes effect once the
    // handshake is done and the handler has served the first bytes that
    // follow (DecryptInLoop); the handshake timeout bounds the wait.
    flush_at_open_ = true;
    return;
  }
  if (state_ != State::kOpen || close_requested_) return;
  close_requested_ = true;
  flush_at_open_ = false;
  // From the call: owed work and the flush share one bound.
  opening_deadline_ = false;
  close_deadline_ = DeadlineAfter(host_.now(), options_.flush_timeout);
  ScheduleDeadlineInLoop();
  if (pending_work_ > 0) return;  // FinishPendingWork() flushes
  StartFlushInLoop();
}

void Connection::ShutdownWrite() {
  host_.AssertInLoopThread();
  if (state_ != State::kOpen || write_shut_requested_) return;
  FlushCorkInLoop();
  if (closed()) return;
  write_shut_requested_ = true;
  // close_notify behind the queued output, then (below or in WriteInLoop)
  // the FIN; reading goes on, and the transport still decrypts.
  if (transport_ != nullptr) {
    SendTransportCloseInLoop();
    if (closed() || write_shut_) return;
  }
  if (output_.empty()) {
    ::shutdown(fd(), SHUT_WR);
    write_shut_ = true;
  }  // else WriteInLoop sends the FIN once the queue is out
}

void Connection::ResumeReading() {
  host_.AssertInLoopThread();
  if (!user_paused_) return;
  user_paused_ = false;
  if (closed() || connecting()) return;  // the open reads anyway
  // Bytes may wait in the socket with their edge already consumed, and
  // input left unconsumed: go back for both next turn.
  redeliver_input_ = !input_.empty();
  ScheduleReadInLoop();
}

void Connection::AddPendingWork() {
  host_.AssertInLoopThread();
  ++pending_work_;
}

void Connection::FinishPendingWork() {
  host_.AssertInLoopThread();
  if (pending_work_ == 0) {
    // A handler's bookkeeping error: its own connection pays, not the process.
    TROUPE_LOG_EVERY_SECOND(kError, "closing %s: FinishPendingWork without AddPendingWork",
                            peer_.ToString());
    Close(CloseReason::kHandlerError);
    return;
  }
  --pending_work_;
  if (closed()) return;
  if (paused_for_work_ && !work_full()) {
    // Input left unconsumed at the limit, and maybe unread bytes: go back
    // for both (no new edge will come for what is already there).
    paused_for_work_ = false;
    redeliver_input_ = !input_.empty();
    ScheduleReadInLoop();
  }
  if (pending_work_ == 0 && close_requested_ && state_ == State::kOpen) StartFlushInLoop();
}

void Connection::StartFlushInLoop() {
  // What the handler gathered goes out before the FIN.
  FlushCorkInLoop();
  if (closed()) return;
  state_ = State::kFlushing;
  if (transport_ != nullptr) {
    // close_notify goes behind everything queued, and the FIN behind it.
    // Its send may drain the output and finish the flush itself.
    SendTransportCloseInLoop();
    if (closed() || state_ != State::kFlushing) return;
  }
  if (output_.empty()) FinishFlushInLoop();
}

void Connection::ScheduleDeadlineInLoop() {
  SteadyClock::time_point deadline = close_deadline_;
  // Connecting, the connect timeout alone applies: no bytes can move yet.
  if (host_.idle_timeout() > SteadyClock::duration::zero() && state_ != State::kConnecting) {
    deadline = std::min(deadline, last_active_ + host_.idle_timeout());
  }
  host_.timers().SetDeadline(id_, deadline);  // max(): none
}

void Connection::DeadlineDueInLoop(SteadyClock::time_point now) {
  if (closed()) return;
  if (state_ == State::kConnecting) {
    if (now < close_deadline_) {
      ScheduleDeadlineInLoop();
      return;
    }
    FailConnectInLoop(
        absl::DeadlineExceededError(absl::StrCat(
            "connect ", peer_.ToString(), ": not open after ",
            absl::FormatDuration(dial_ != nullptr ? dial_->timeout : absl::ZeroDuration()))),
        CloseReason::kConnectTimeout);
    return;
  }
  if (opening_deadline_ && now >= close_deadline_) {
    opening_deadline_ = false;
    Close(opening_reason_);
    return;
  }
  if (handshaking() && now >= close_deadline_) {
    TransportFailedInLoop(CloseReason::kTlsHandshakeTimeout, "no complete handshake in time");
    return;
  }
  const SteadyClock::duration idle = host_.idle_timeout();
  if (now >= close_deadline_) {
    Close(state_ == State::kLingering ? CloseReason::kLingerTimeout : CloseReason::kFlushTimeout);
  } else if (idle > SteadyClock::duration::zero() && last_active_ + idle <= now) {
    Close(CloseReason::kIdleTimeout);
  } else {
    ScheduleDeadlineInLoop();  // activity moved it: lazy rescheduling
  }
}

void Connection::FinishFlushInLoop() {
  if (peer_eof_) {
    // Everything the peer sent was read, so close() sends FIN, not RST.
    Close(CloseReason::kPeerClosed);
    return;
  }
  // Our FIN goes out after the queued bytes; unread input arriving from now
  // on is read and discarded, because a close() with unread input would send
  // RST and the peer could lose the tail of our output (invariant 7, docs/architecture.md).
  ::shutdown(fd(), SHUT_WR);
  state_ = State::kLingering;
  opening_deadline_ = false;
  close_deadline_ = DeadlineAfter(host_.now(), options_.linger_timeout);
  ScheduleDeadlineInLoop();
  ScheduleReadInLoop();
}

void Connection::OnPeerEofInLoop() {
  peer_eof_ = true;
  switch (state_) {
    case State::kConnecting:  // never read from (ReadInLoop)
      break;
    case State::kOpen:
      handler_->OnPeerClosed(*this);
      break;
    case State::kFlushing:
      break;  // FinishFlushInLoop closes once the output is out
    case State::kLingering:
      Close(CloseReason::kFlushedClose);
      break;
    case State::kClosed:
      break;
  }
}

std::optional<MailDrop> Connection::EnqueueMailInLoop(Mail mail, MailClass mail_class) {
  const std::optional<MailDrop> dropped =
      host_.Offer(mailbox_, id_, std::move(mail), mail_class, options_.mailbox_capacity,
                  options_.mailbox_overflow);
  if (dropped == MailDrop::kActorClosed) {
    TROUPE_LOG_EVERY_SECOND(kWarning, "closing %s: mailbox full (%d mails waiting)",
                            peer_.ToString(), mailbox_.size());
    Close(CloseReason::kMailboxOverflow);
  }
  if (dropped) return dropped;
  ScheduleMailInLoop();
  return std::nullopt;
}

void Connection::ScheduleMailInLoop() {
  if (in_mail_ready_) return;
  in_mail_ready_ = true;
  host_.MailReady(id_);
}

void Connection::HandOverMailInLoop(size_t max) {
  in_mail_ready_ = false;
  // Connecting or handshaking: it waits for OnOpen; the open asks again.
  if (!opened_) return;
  // What is waiting now, not what arrives meanwhile (an actor mailing
  // itself waits for the next pass).
  const size_t n = std::min(max, mailbox_.size());
  // The replies to a batch of mail leave in one write (a chat member handed
  // ten lines sends them together).
  CorkInLoop();
  for (size_t i = 0; i < n && !mailbox_.empty() && !closed(); ++i) {
    Mail mail = mailbox_.Pop();
    host_.MailboxDepthChanged(-1, 0);
    ReactorCounters::Bump(host_.counters().mail_delivered);
    handler_->OnMail(*this, std::move(mail));
  }
  UncorkInLoop();
  if (!closed() && !mailbox_.empty()) ScheduleMailInLoop();
}

bool Connection::ReadTransportInLoop(size_t budget, bool until_eagain) {
  char* const scratch = host_.scratch();
  constexpr size_t kScratch = ConnectionHost::kScratchBytes;
  bool socket_may_hold_more = true;
  bool budget_spent = false;
  while (!closed() && !peer_eof_) {
    // What the transport holds first: the bytes just fed, or what a pause
    // left there (no new edge comes for it; the resume reads again).
    if (state_ == State::kOpen && !DecryptInLoop()) return false;
    if (closed() || peer_eof_) return false;
    if (budget_spent) return true;
    if (!socket_may_hold_more) return false;
    // Everything fed was copied into the transport, so the scratch is free:
    // always read into it (no readv behind a partial frame here).
    const ssize_t n = ::recv(fd(), scratch, kScratch, 0);
    if (n > 0) {
      const size_t got = static_cast<size_t>(n);
      ReactorCounters::Bump(host_.counters().bytes_in, got);
      last_active_ = host_.now();
      // Flushing or lingering: read only to be discarded, as without one.
      if (state_ == State::kOpen) {
        transport_fed_ = true;
        transport_->Feed(std::string_view(scratch, got));
      }
      // The same short-read rule as ReadInLoop, once what came is decrypted.
      if (got < kScratch && !until_eagain) socket_may_hold_more = false;
      if (got >= budget) {
        budget_spent = true;
      } else {
        budget -= got;
      }
    } else if (n == 0) {
      TransportEofInLoop();
      return false;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return false;
    } else if (handshaking()) {
      // A client that rejects our certificate sends its alert and closes,
      // and the reset often overtakes the alert: still a failed handshake.
      const int error = errno;
      TransportFailedInLoop(
          CloseReason::kTlsHandshakeFailed,
          error == ECONNRESET ? "reset inside the handshake" : "socket error inside the handshake");
      return false;
    } else {
      FailInLoop(errno);
      return false;
    }
  }
  return false;
}

bool Connection::DecryptInLoop() {
  char* const scratch = host_.scratch();
  // The handshake's replies and what waited in it were admitted already
  // (SendTransportInLoop), alerts and key updates are small and bounded by
  // the watermark pause below.
  const auto sink = [this](std::string_view wire) {
    if (!closed()) SendRawInLoop(wire, /*admitted=*/true);
  };
  bool delivered = false;  // plaintext went to the handler in this call
  for (;;) {
    if (opened_) {
      // ReadInLoop's pauses, applied to plaintext: what is not handed over
      // stays in the transport until the pause ends and reads again.
      if (close_requested_ || user_paused_) return false;
      if (work_full()) {
        paused_for_work_ = true;
        return false;
      }
      if (output_.size() > options_.high_watermark) {
        read_paused_ = true;
        return false;
      }
    }
    const Transport::ReadResult read =
        transport_->Read(scratch, ConnectionHost::kScratchBytes, sink);
    if (closed()) return false;  // a handshake reply's send failed
    switch (read.status) {
      case Transport::ReadStatus::kData:
        DeliverPlainInLoop(std::string_view(scratch, read.size));
        delivered = true;
        break;
      case Transport::ReadStatus::kHandshakeDone:
        FinishHandshakeInLoop();
        break;
      case Transport::ReadStatus::kNeedInput:
        if (flush_at_open_ && delivered && input_.empty()) {
          // CloseAfterFlush() came inside the handshake: the first request
          // after it is served (no partial frame left), then it applies.
          flush_at_open_ = false;
          CloseAfterFlush();
        }
        return true;
      case Transport::ReadStatus::kPeerClosed:
        OnPeerEofInLoop();  // close_notify: the peer's EOF
        return false;
      case Transport::ReadStatus::kFailed:
        TransportFailedInLoop(opened_ ? CloseReason::kTlsError : CloseReason::kTlsHandshakeFailed,
                              transport_->error());
        return false;
    }
    if (closed() || state_ != State::kOpen) return false;
  }
}

void Connection::DeliverPlainInLoop(std::string_view plain) {
  if (input_.empty()) {
    const size_t used = handler_->OnData(*this, plain);
    if (closed()) return;
    TROUPE_CHECK(used <= plain.size(), "OnData consumed more than it got");
    input_.Append(plain.substr(used));
  } else {
    input_.Append(plain);
    const size_t used = handler_->OnData(*this, input_.view());
    if (closed()) return;
    TROUPE_CHECK(used <= input_.size(), "OnData consumed more than it got");
    input_.Consume(used);
  }
  CheckInputInLoop();
}

void Connection::SendTransportInLoop(std::string_view plain) {
  // Admitted once per plaintext Send, as plaintext is per write: the sink's
  // many calls (a record batch each) append without checking again, so one
  // large reply to a peer that keeps up is never cut.
  if (!transport_->handshake_done()) {
    // Held by the transport until the handshake is done: bounded the same.
    if (early_bytes_ + plain.size() > options_.max_output_bytes) {
      TROUPE_LOG_EVERY_SECOND(kWarning,
                              "closing %s: slow consumer, %d bytes sent during the handshake "
                              "and %d more would pass the limit of %d",
                              peer_.ToString(), early_bytes_, plain.size(),
                              options_.max_output_bytes);
      Close(CloseReason::kSlowConsumer);
      return;
    }
    early_bytes_ += plain.size();
  } else if (!QueueOutput(TransportWireBound(plain.size()))) {
    return;
  }
  const bool ok = transport_->Write(plain, [this](std::string_view wire) {
    if (!closed()) SendRawInLoop(wire, /*admitted=*/true);
  });
  if (!ok && !closed()) TransportFailedInLoop(CloseReason::kTlsError, transport_->error());
}

void Connection::SendTransportCloseInLoop() {
  // close_notify: a few bytes, once.
  transport_->Shutdown([this](std::string_view wire) {
    if (!closed()) SendRawInLoop(wire, /*admitted=*/true);
  });
}

void Connection::FinishHandshakeInLoop() {
  early_bytes_ = 0;  // the transport wrote them out before it said done
  // The handshake's deadline ends; idle from now on, unless CloseAfterFlush()
  // came inside it: its flush bound starts now.
  close_deadline_ = flush_at_open_ ? DeadlineAfter(host_.now(), options_.flush_timeout)
                                   : SteadyClock::time_point::max();
  last_active_ = host_.now();
  ScheduleDeadlineInLoop();
  opened_ = true;
  handler_->OnOpen(*this);
  if (closed()) return;
  if (!mailbox_.empty()) ScheduleMailInLoop();  // mail that waited for the open
}

void Connection::TransportEofInLoop() {
  if (handshaking()) {
    peer_eof_ = true;
    if (transport_fed_) {
      TransportFailedInLoop(CloseReason::kTlsHandshakeFailed, "closed inside the handshake");
    } else {
      // Connected and closed without a byte: a TCP health check, not a bad
      // handshake. The handler never had OnOpen, so it hears nothing.
      Close(CloseReason::kPeerClosed);
    }
    return;
  }
  // After the handshake without close_notify (a truncated stream; many
  // clients close that way): still the peer's EOF.
  OnPeerEofInLoop();
}

void Connection::TransportFailedInLoop(CloseReason reason, std::string_view why) {
  // One call site for every transport failure, so that together they log at
  // most a line a second: a fleet of plaintext clients must not flood it.
  TROUPE_LOG_EVERY_SECOND(kWarning, "closing %s: %s (%s)", peer_.ToString(), std::string(why),
                          CloseReasonName(reason));
  Close(reason);
}

void Connection::FailInLoop(int error) {
  Close(error == ECONNRESET || error == EPIPE ? CloseReason::kPeerReset
                                              : CloseReason::kSocketError);
}

}  // namespace troupe
