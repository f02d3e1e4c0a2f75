#include "load/churn.h"

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
#include "absl/time/time.h"
#include "core/base/check.h"
#include "core/net/socket.h"

namespace troupe::load {
namespace {

// Bytes per recv() and per send() at most: one contiguous range of the
// stream (Stream::At).
constexpr size_t kChunk = kStreamChunk;
// The drain waits at least this long for the cycles in flight, as the
// worker's drain does for echoes (load/worker.cc).
constexpr int64_t kDrainNs = 1'000'000'000;
// Deadlines are checked every shortest timeout / 4, so one is caught at
// most a quarter late; never more often than every millisecond.
constexpr int64_t kChecksPerTimeout = 4;
constexpr int64_t kMinCheckIntervalNs = 1'000'000;

// "what: strerror text", without absl::ErrnoToStatus on a worker thread
// (see ErrnoMessage in load/session.cc for why).
std::string ErrnoMessage(int error, absl::string_view what) {
  char text[256];
  return absl::StrCat(what, ": ", ::strerror_r(error, text, sizeof(text)));
}

// Infinite or huge durations saturate; zero stays zero.
int64_t Nanos(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return std::numeric_limits<int64_t>::max();
  return absl::ToInt64Nanoseconds(d);
}

}  // namespace

ChurnLoop::ChurnLoop(const LoadOptions& options, const Stream& stream,
                     const std::vector<Address>& sources, int epoll_fd, int first_index, int count,
                     WorkerTally& tally)
    : options_(options),
      stream_(stream),
      sources_(sources),
      epoll_fd_(epoll_fd),
      tally_(tally),
      slots_(static_cast<size_t>(count)),
      connect_ns_(Nanos(options.connect_timeout)),
      read_buffer_(new uint8_t[kChunk]) {
  for (size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].index = first_index + static_cast<int>(i);
  }
  if (options.stall_timeout > absl::ZeroDuration()) stall_ns_ = Nanos(options.stall_timeout);
}

std::string ChurnLoop::CycleNote(const Slot& s) {
  return absl::StrCat(" (churn cycle ", s.cycle, ")");
}

void ChurnLoop::StartCycle(Slot& s, int64_t now) {
  if (draining_) return;
  ++s.cycle;
  // A new stream each cycle: slot i's cycle c is stream i + c * connections,
  // so no two cycles of the run share one until the streams wrap.
  s.seed = stream_.SeedFor(static_cast<uint64_t>(s.index) +
                           s.cycle * static_cast<uint64_t>(options_.connections));
  s.sent = 0;
  s.received = 0;
  s.start_ns = now;
  s.progress_ns = now;
  // Each cycle takes the next source address: every address's ports share
  // the TIME_WAITs, however few slots there are.
  const Address* source =
      sources_.empty()
          ? nullptr
          : &sources_[(next_source_++ + static_cast<uint64_t>(s.index)) % sources_.size()];
  absl::StatusOr<Fd> fd = ConnectTcpNonBlocking(options_.target, source);
  if (!fd.ok()) {
    // EADDRNOTAVAIL here means no free source port: see docs/echo-load.md.
    tally_.ChurnConnectFailed(absl::StrCat(fd.status().message(), CycleNote(s)));
    retry_.push_back(static_cast<size_t>(&s - slots_.data()));
    return;
  }
  // Edge-triggered: the slot always reads until EAGAIN and sends until the
  // message is out or EAGAIN, so it never needs epoll_ctl again.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = static_cast<uint64_t>(&s - slots_.data());
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd->get(), &ev) != 0) {
    tally_.ChurnConnectFailed(absl::StrCat(ErrnoMessage(errno, "epoll_ctl ADD"), CycleNote(s)));
    retry_.push_back(static_cast<size_t>(&s - slots_.data()));
    return;
  }
  s.fd = *std::move(fd);
  s.state = State::kConnecting;
  ++busy_;
}

void ChurnLoop::HandleEvent(Slot& s, uint32_t events, int64_t now) {
  if (s.state == State::kConnecting) {
    int code = 0;
    socklen_t len = sizeof(code);
    if (::getsockopt(s.fd.get(), SOL_SOCKET, SO_ERROR, &code, &len) != 0) code = errno;
    if (code != 0) {
      tally_.ChurnConnectFailed(absl::StrCat(
          ErrnoMessage(code, absl::StrCat("connect ", options_.target.ToString())), CycleNote(s)));
      EndCycle(s, now);
      return;
    }
    if ((events & EPOLLOUT) == 0) return;  // Still under way.
    tally_.ChurnConnected();
    s.state = State::kOpen;
    s.progress_ns = now;
  }
  if (s.state == State::kOpen && s.sent < stream_.EndOf(1) && !Flush(s)) return;
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) Read(s, events, now);
}

bool ChurnLoop::Flush(Slot& s) {
  const uint64_t size = stream_.EndOf(1);
  while (s.sent < size) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(size - s.sent, kChunk));
    // MSG_NOSIGNAL: a peer reset is an error to count, not a SIGPIPE.
    const ssize_t n = ::send(s.fd.get(), stream_.At(s.seed, s.sent), len, MSG_NOSIGNAL);
    if (n >= 0) {
      s.sent += static_cast<uint64_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    // EPOLLOUT (edge) resumes the send once the kernel has room.
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    tally_.Lost(absl::StrFormat("connection %d lost after %d of %d bytes sent: %s%s", s.index,
                                s.sent, size, ErrnoMessage(errno, "send"), CycleNote(s)));
    EndCycle(s, MonotonicNanos());
    return false;
  }
  return true;
}

void ChurnLoop::Read(Slot& s, uint32_t events, int64_t now) {
  const uint64_t size = stream_.EndOf(1);
  uint8_t* const buffer = read_buffer_.get();
  // While the echo comes in, a short read means the queue is empty and a
  // later byte raises a new edge; a pending FIN or error raises none, so
  // then read until recv() reports it. Waiting for the server's close,
  // read to the end always: its FIN may already be queued.
  const bool read_to_end = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
  for (;;) {
    const ssize_t n = ::recv(s.fd.get(), buffer, kChunk, 0);
    if (n > 0) {
      // In kClosing every byte is beyond what was sent, which CheckEcho
      // reports as such.
      if (std::optional<std::string> error =
              CheckEcho(s.index, stream_.At(s.seed, s.received), s.received, s.sent, buffer,
                        static_cast<size_t>(n))) {
        tally_.VerificationFailed(absl::StrCat(*error, CycleNote(s)));
        EndCycle(s, now);
        return;
      }
      s.received += static_cast<uint64_t>(n);
      s.progress_ns = now;
      if (s.received == size) {
        Echoed(s, now);
        if (s.state != State::kClosing) return;
        continue;
      }
      if (static_cast<size_t>(n) < kChunk && !read_to_end) return;
      continue;
    }
    if (n == 0) {
      if (s.state == State::kClosing) {
        Complete(s, now);
        return;
      }
      tally_.Lost(absl::StrFormat(
          "connection %d lost after %d of %d bytes echoed: peer closed the connection%s", s.index,
          s.received, size, CycleNote(s)));
      EndCycle(s, now);
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    tally_.Lost(absl::StrFormat(
        "connection %d lost after %d of %d bytes echoed: %s%s", s.index, s.received, size,
        ErrnoMessage(errno,
                     s.state == State::kClosing ? "recv, waiting for the server's close" : "recv"),
        CycleNote(s)));
    EndCycle(s, now);
    return;
  }
}

void ChurnLoop::Echoed(Slot& s, int64_t now) {
  s.echoed_ns = now;
  if (options_.churn_close == LoadOptions::ChurnClose::kReset) {
    // close() with a zero linger time sends a reset and skips TIME_WAIT.
    const linger abort{.l_onoff = 1, .l_linger = 0};
    ::setsockopt(s.fd.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
    Complete(s, now);
    return;
  }
  // Our FIN; the server's answers it once it has read to the end (an echo
  // server closes when its client does). Waiting for it checks that the
  // server sends nothing more and closes cleanly, and keeps one socket per
  // slot at a time.
  if (::shutdown(s.fd.get(), SHUT_WR) != 0) {
    tally_.Lost(absl::StrFormat("connection %d lost after its echo: %s%s", s.index,
                                ErrnoMessage(errno, "shutdown"), CycleNote(s)));
    EndCycle(s, now);
    return;
  }
  s.state = State::kClosing;
  s.progress_ns = now;
}

void ChurnLoop::Complete(Slot& s, int64_t now) {
  if (!draining_) {
    const bool measured = now >= measure_start_ns_;
    tally_.Completed(static_cast<uint64_t>(std::max<int64_t>(s.echoed_ns - s.start_ns, 0)),
                     measured);
    // The echoed bytes count with their cycle, so that the report's bytes
    // are its messages times the size.
    if (measured) tally_.MeasuredBytes(s.received);
  }
  EndCycle(s, now);
}

void ChurnLoop::EndCycle(Slot& s, int64_t now) {
  // close() also removes the descriptor from the epoll set.
  s.fd.Reset();
  if (s.state != State::kIdle) --busy_;
  s.state = State::kIdle;
  StartCycle(s, now);
}

void ChurnLoop::CheckDeadlines(int64_t now) {
  for (Slot& s : slots_) {
    switch (s.state) {
      case State::kIdle:
        break;
      case State::kConnecting:
        if (now - s.start_ns >= connect_ns_) {
          tally_.ChurnConnectFailed(
              absl::StrCat("connect ", options_.target.ToString(), ": timed out after ",
                           absl::FormatDuration(options_.connect_timeout), CycleNote(s)));
          EndCycle(s, now);
        }
        break;
      case State::kOpen:
        if (stall_ns_ > 0 && now - s.progress_ns >= stall_ns_) {
          tally_.Stalled(absl::StrFormat(
              "connection %d stalled: no byte received in %s with %d of %d sent bytes echoed%s",
              s.index, absl::FormatDuration(options_.stall_timeout), s.received, s.sent,
              CycleNote(s)));
          EndCycle(s, now);
        }
        break;
      case State::kClosing:
        if (stall_ns_ > 0 && now - s.progress_ns >= stall_ns_) {
          tally_.Stalled(absl::StrFormat(
              "connection %d stalled: the server did not close within %s of the client's FIN%s",
              s.index, absl::FormatDuration(options_.stall_timeout), CycleNote(s)));
          EndCycle(s, now);
        }
        break;
    }
  }
}

void ChurnLoop::PollOnce(int64_t deadline_ns) {
  const int n = WaitForEvents(epoll_fd_, events_, kMaxEvents, deadline_ns);
  if (n < 0) {
    TROUPE_CHECK(errno == EINTR, "epoll_wait failed on a valid epoll fd");
    return;
  }
  for (int i = 0; i < n; ++i) {
    Slot& s = slots_[events_[i].data.u64];
    // A cycle ended by an earlier event of this batch has a new socket (or
    // none), whose own events come in a later batch.
    if (s.state != State::kIdle) HandleEvent(s, events_[i].events, MonotonicNanos());
  }
}

void ChurnLoop::Run(const PhaseTimes& times, ThreadCpuWindow& cpu) {
  measure_start_ns_ = times.measure_start_ns;
  const int64_t start = MonotonicNanos();
  for (Slot& s : slots_) StartCycle(s, start);
  int64_t shortest = connect_ns_;
  if (stall_ns_ > 0) shortest = std::min(shortest, stall_ns_);
  const int64_t check_interval = std::max(shortest / kChecksPerTimeout, kMinCheckIntervalNs);
  int64_t next_check = start + check_interval;
  int64_t drain_deadline = std::numeric_limits<int64_t>::max();
  std::vector<size_t> retrying;
  for (;;) {
    const int64_t now = MonotonicNanos();
    if (!cpu.started() && now >= times.measure_start_ns) cpu.Start(now);
    if (!draining_ && now >= times.end_ns) {
      cpu.Stop(now);
      tally_.EndLoop(now);
      draining_ = true;
      retry_.clear();
      const int64_t drain_ns = std::max(kDrainNs, stall_ns_);
      drain_deadline = now + std::min(drain_ns, std::numeric_limits<int64_t>::max() - now);
    }
    if (draining_ && (busy_ == 0 || now >= drain_deadline)) break;
    if (!retry_.empty()) {
      // Swapped out first: a connect that fails again queues its slot for
      // the next turn, not for this loop.
      retrying.swap(retry_);
      for (const size_t i : retrying) StartCycle(slots_[i], now);
      retrying.clear();
    }
    if (now >= next_check) {
      CheckDeadlines(now);
      next_check = now + check_interval;
    }
    int64_t wake = std::min(draining_ ? drain_deadline : times.end_ns, next_check);
    // The measured window's CPU counts from its first turn; wake for it.
    if (!cpu.started()) wake = std::min(wake, times.measure_start_ns);
    if (!retry_.empty()) wake = now;
    PollOnce(wake);
  }
  // Whatever is still under way did not finish in the drain.
  for (Slot& s : slots_) {
    if (s.state == State::kIdle) continue;
    std::string where;
    switch (s.state) {
      case State::kConnecting:
        where = "still connecting";
        break;
      case State::kOpen:
        where = absl::StrFormat("%d of %d sent bytes echoed", s.received, s.sent);
        break;
      default:
        where = "waiting for the server's close";
        break;
    }
    tally_.Incomplete(absl::StrFormat("connection %d incomplete at the end of the run: %s%s",
                                      s.index, where, CycleNote(s)));
    s.fd.Reset();
    s.state = State::kIdle;
  }
  busy_ = 0;
  tally_.Finish();
}

}  // namespace troupe::load
