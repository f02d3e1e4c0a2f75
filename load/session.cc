#include "load/session.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
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

// "what: strerror text", as absl::ErrnoToStatus words it. Used on worker
// threads instead of it: the distribution's Abseil is not built with
// ThreadSanitizer, and the lazily built table behind its StrError() shows up
// as a race between the first two threads that fail.
std::string ErrnoMessage(int error, absl::string_view what) {
  char text[256];
  return absl::StrCat(what, ": ", ::strerror_r(error, text, sizeof(text)));
}

}  // namespace

void Session::Init(int index, size_t local, int64_t* issue_times) {
  index_ = index;
  local_ = local;
  seed_ = SeedOf(index);
  issue_times_ = issue_times;
}

bool Session::StartConnect(SessionContext& context, const Address& target, const Address* source,
                           int epoll_fd) {
  absl::StatusOr<Fd> fd = ConnectTcpNonBlocking(target, source);
  if (!fd.ok()) {
    FailConnect(context, fd.status().message());
    return false;
  }
  fd_ = *std::move(fd);
  // Edge-triggered: the session always reads and writes until EAGAIN (or a
  // short read, see ReadAndVerify), so it never needs epoll_ctl again.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = local_;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd_.get(), &ev) != 0) {
    FailConnect(context, ErrnoMessage(errno, "epoll_ctl ADD"));
    return false;
  }
  state_ = SessionState::kConnecting;
  return true;
}

bool Session::FinishConnect(SessionContext& context, const Address& target, uint32_t events) {
  int error = 0;
  socklen_t len = sizeof(error);
  if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) {
    error = errno;
  }
  // Neither writable nor failed: the handshake is still under way.
  if (error == 0 && (events & EPOLLOUT) == 0) return false;
  if (error == 0) {
    state_ = SessionState::kOpen;
    ++context.open;
    context.tally.Established();
    return true;
  }
  FailConnect(context, ErrnoMessage(error, absl::StrCat("connect ", target.ToString())));
  return true;
}

void Session::FailConnect(SessionContext& context, absl::string_view why) {
  context.tally.ConnectFailed(why);
  fd_.Reset();
  state_ = SessionState::kClosed;
}

void Session::HandleEvent(SessionContext& context, uint32_t events, int64_t now) {
  if (state_ != SessionState::kOpen) return;
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0 &&
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

bool Session::ReadAndVerify(SessionContext& context, uint32_t events, int64_t now) {
  // A short read means the receive queue was empty; with EPOLLET any byte
  // arriving later raises a new event, so reading on to EAGAIN would only
  // cost a syscall. A pending FIN or error raises no new edge, though, so
  // then read until recv() reports it.
  const bool read_to_end = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
  uint8_t* const buffer = context.read_buffer.get();
  for (;;) {
    const ssize_t n = ::recv(fd_.get(), buffer, kReadChunk, 0);
    if (n > 0) {
      if (std::optional<std::string> error =
              CheckEcho(index_, context.stream.At(seed_, received_), received_, sent_, buffer,
                        static_cast<size_t>(n))) {
        // One report per connection: after a mismatch the stream is out of
        // step, and every later byte would be reported too.
        context.tally.VerificationFailed(*std::move(error));
        Close(context);
        return false;
      }
      received_ += static_cast<uint64_t>(n);
      progress_ns_ = now;
      if (!context.draining && now >= context.measure_start_ns) {
        context.tally.MeasuredBytes(static_cast<uint64_t>(n));
      }
      CompleteMessages(context, now);
      if (state_ != SessionState::kOpen) return false;  // Script finished.
      if (static_cast<size_t>(n) < kReadChunk && !read_to_end) return true;
      continue;
    }
    if (n == 0) {
      PeerGone(context, "peer closed the connection");
      return false;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    PeerGone(context, ErrnoMessage(errno, "recv"));
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
    // Open loop: only what is due, stamped with when it was due.
    limit = std::min(limit, context.open_loop.DueCount(local_, now));
    for (; issued_ < limit; ++issued_) {
      issue_times_[issued_ % context.pipeline] = context.open_loop.DueTime(local_, issued_);
    }
  } else {
    for (; issued_ < limit; ++issued_) {
      issue_times_[issued_ % context.pipeline] = now;
    }
  }
  return issued_ != before;
}

void Session::Flush(SessionContext& context) {
  const uint64_t target = context.stream.EndOf(issued_);
  while (sent_ < target) {
    const uint8_t* from = context.stream.At(seed_, sent_);
    const size_t len = static_cast<size_t>(std::min<uint64_t>(target - sent_, kSendChunk));
    // MSG_NOSIGNAL: a peer reset is an error to count, not a SIGPIPE.
    const ssize_t n = ::send(fd_.get(), from, len, MSG_NOSIGNAL);
    if (n >= 0) {
      sent_ += static_cast<uint64_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    // EPOLLOUT (edge) resumes the send once the kernel has room.
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    PeerGone(context, ErrnoMessage(errno, "send"));
    return;
  }
}

void Session::PeerGone(SessionContext& context, absl::string_view why) {
  if (context.draining) {
    // The peer may close first once everything is back; before that, it
    // took echoes with it.
    if (received_ < sent_) {
      Incomplete(context, why);
      return;
    }
  } else {
    context.tally.Lost(
        absl::StrFormat("connection %d lost after %d bytes echoed: %s", index_, received_, why));
  }
  Close(context);
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
  Close(context);
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
  if (state_ == SessionState::kOpen) --context.open;
  // close() also removes the descriptor from the epoll set.
  fd_.Reset();
  state_ = SessionState::kClosed;
}

}  // namespace troupe::load
