#include "apps/echo_load/load_client.h"

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <latch>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "core/check.h"
#include "core/fd.h"
#include "core/socket.h"

namespace troupe {
namespace {

// Bytes per recv(): large, so that a busy connection's echoes come back in
// few syscalls (the default loopback receive buffer holds a few of these).
constexpr size_t kReadChunk = 64 * 1024;
// Bytes per send() at most; bounded by the pattern table's slack below.
constexpr size_t kSendChunk = 64 * 1024;
// The stream's period: the largest prime below 2^16. Prime, so that no
// power-of-two message or buffer size lines up with it (a server repeating a
// 4 KiB block is caught); small, so that the table stays in L2 cache.
constexpr uint64_t kPatternPeriod = 65521;
constexpr size_t kPatternSlack = std::max(kReadChunk, kSendChunk);
// Connection i starts its stream at (i * kSeedStride) mod kPatternPeriod:
// distinct for the first kPatternPeriod connections (the period is prime),
// and far apart for neighbours (the stride is ~0.618 of the period).
constexpr uint64_t kSeedStride = 40503;
// Events taken per epoll_wait; more only lengthens one loop turn.
constexpr int kMaxEvents = 1024;
// How long the end of a run waits for echoes still in flight.
constexpr absl::Duration kDrainTimeout = absl::Seconds(1);
// Guards against typos that would allocate gigabytes of send-time rings.
constexpr int kMaxPipeline = 1 << 16;
constexpr size_t kMaxMessageSize = size_t{1} << 30;

// The shared stream table: kPatternPeriod pseudo-random bytes, then a copy of
// the first kPatternSlack of them, so that any chunk starting inside the
// period can be sent or compared as one contiguous range. Built once, then
// only read, by every thread.
const uint8_t* PatternTable() {
  static const uint8_t* const table = [] {
    // Intentionally leaked: read by threads until process exit.
    auto* bytes = new uint8_t[kPatternPeriod + kPatternSlack];
    // splitmix64 (Steele, Lea, Flood 2014): cheap and well mixed.
    uint64_t state = 0x9E3779B97F4A7C15u;
    for (uint64_t i = 0; i < kPatternPeriod; ++i) {
      uint64_t z = (state += 0x9E3779B97F4A7C15u);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
      bytes[i] = static_cast<uint8_t>((z ^ (z >> 31)) >> 56);
    }
    // A forward loop, not memcpy: the slack is longer than the period, so
    // it copies bytes it has just written.
    for (uint64_t i = kPatternPeriod; i < kPatternPeriod + kPatternSlack; ++i) {
      bytes[i] = bytes[i - kPatternPeriod];
    }
    return bytes;
  }();
  return table;
}

// CLOCK_MONOTONIC, not absl::Now(): latencies and phase deadlines must not
// jump when the wall clock is stepped. One vDSO call, ~20 ns.
int64_t MonotonicNanos() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// epoll_wait timeout for `ns` from now, rounded up so a loop never wakes
// just before its deadline and spins.
int TimeoutMs(int64_t ns) {
  if (ns <= 0) return 0;
  return static_cast<int>(
      std::min<int64_t>((ns + 999'999) / 1'000'000, 24 * 3600 * 1000));
}

// "what: strerror text", as absl::ErrnoToStatus words it. Used on worker
// threads instead of it: the distribution's Abseil is not built with
// ThreadSanitizer, and the lazily built table behind its StrError() shows up
// as a race between the first two threads that fail.
std::string ErrnoMessage(int error, absl::string_view what) {
  char text[256];
  return absl::StrCat(what, ": ", ::strerror_r(error, text, sizeof(text)));
}

int OnlineCpus() {
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

// Times of the run's phases, on the MonotonicNanos() clock. Written by
// RunLoad before it notifies the workers, read-only afterwards.
struct Schedule {
  bool abort = false;
  int64_t measure_start_ns = 0;
  int64_t end_ns = 0;
};

struct WorkerResult {
  int established = 0;
  int connect_failed = 0;
  std::string first_connect_error;
  uint64_t messages = 0;
  uint64_t bytes = 0;
  LatencyHistogram latency_ns;
  uint64_t verification_errors = 0;
  uint64_t lost = 0;
  std::vector<std::string> errors;  // At most LoadReport::kMaxErrorMessages.
  int64_t loop_end_ns = 0;          // When the measured loop stopped.
};

enum class ConnState : uint8_t { kIdle, kConnecting, kOpen, kClosed };

// One client connection. Stream offsets count bytes since the connection
// opened; message k occupies stream bytes [k * size, (k + 1) * size).
//
//   0        received          sent           issued * size
//   |--------|------------------|--------------|
//    echoed   in flight          issued, not yet accepted by the kernel
//    verified (sent, not back)
struct Conn {
  Fd fd;
  ConnState state = ConnState::kIdle;
  int index = 0;      // Global connection number, for error messages.
  uint64_t seed = 0;  // Pattern position of stream offset 0.
  uint64_t sent = 0;
  uint64_t received = 0;
  uint64_t issued = 0;             // Messages issued.
  uint64_t completed = 0;          // Messages fully echoed.
  int64_t* issue_times = nullptr;  // Ring of `pipeline` entries, by message.
};

// One thread's share of the connections and its epoll loop.
// Thread safety: thread-compatible; owned by one worker thread at a time.
class Worker {
 public:
  static absl::StatusOr<std::unique_ptr<Worker>> Create(
      const LoadOptions& options, int first_index, int count) {
    Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll.valid()) return absl::ErrnoToStatus(errno, "epoll_create1");
    return std::unique_ptr<Worker>(
        new Worker(options, std::move(epoll), first_index, count));
  }

  // Phase 1: opens every connection, waiting until `deadline_ns` at most.
  void Connect(int64_t deadline_ns);
  // Phases 2-4: traffic until schedule.end_ns, then drains and closes.
  void Run(const Schedule& schedule);
  // Closes whatever is still open (also used when the run is aborted).
  void CloseAll();

  WorkerResult& result() { return result_; }

 private:
  Worker(const LoadOptions& options, Fd epoll, int first_index, int count)
      : options_(options),
        pipeline_(static_cast<uint64_t>(options.pipeline)),
        pattern_(PatternTable()),
        epoll_(std::move(epoll)),
        conns_(static_cast<size_t>(count)),
        issue_times_(static_cast<size_t>(count) * pipeline_),
        read_buffer_(new uint8_t[kReadChunk]) {
    for (int i = 0; i < count; ++i) {
      Conn& c = conns_[static_cast<size_t>(i)];
      c.index = first_index + i;
      c.seed = (static_cast<uint64_t>(c.index) * kSeedStride) % kPatternPeriod;
      c.issue_times = &issue_times_[static_cast<size_t>(i) * pipeline_];
    }
  }

  // Waits for events until `deadline_ns` and hands each to `handle`.
  template <typename Handler>
  void PollOnce(int64_t deadline_ns, Handler handle);

  void HandleEvent(Conn& c, uint32_t events, int64_t now);
  // Reads until the socket is drained. False when `c` was closed.
  bool ReadAndVerify(Conn& c, uint32_t events, int64_t now);
  bool Verify(Conn& c, const uint8_t* data, size_t n);
  void CompleteMessages(Conn& c, int64_t now);
  void IssueMessages(Conn& c, int64_t now);
  void Flush(Conn& c);

  void ConnectFailed(Conn& c, absl::string_view why);
  void PeerGone(Conn& c, absl::string_view why);
  void Close(Conn& c);
  void AddError(std::string message);

  const LoadOptions& options_;
  const uint64_t pipeline_;
  const uint8_t* const pattern_;  // Shared, read-only.
  Fd epoll_;
  std::vector<Conn> conns_;           // Never resized: epoll data indexes it.
  std::vector<int64_t> issue_times_;  // conns_.size() * pipeline_ entries.
  std::unique_ptr<uint8_t[]> read_buffer_;
  epoll_event events_[kMaxEvents];
  int open_ = 0;
  bool draining_ = false;
  int64_t measure_start_ns_ = 0;
  WorkerResult result_;
};

template <typename Handler>
void Worker::PollOnce(int64_t deadline_ns, Handler handle) {
  const int n = ::epoll_wait(epoll_.get(), events_, kMaxEvents,
                             TimeoutMs(deadline_ns - MonotonicNanos()));
  if (n < 0) {
    TROUPE_CHECK(errno == EINTR, "epoll_wait failed on a valid epoll fd");
    return;
  }
  for (int i = 0; i < n; ++i) {
    handle(conns_[events_[i].data.u64], events_[i].events);
  }
}

void Worker::Connect(int64_t deadline_ns) {
  int pending = 0;
  for (size_t i = 0; i < conns_.size(); ++i) {
    Conn& c = conns_[i];
    absl::StatusOr<Fd> fd = ConnectTcpNonBlocking(options_.target);
    if (!fd.ok()) {
      ConnectFailed(c, fd.status().message());
      continue;
    }
    c.fd = *std::move(fd);
    // Edge-triggered: the loop always reads and writes until EAGAIN (or a
    // short read, see ReadAndVerify), so it never needs epoll_ctl again.
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = i;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev) != 0) {
      ConnectFailed(c, ErrnoMessage(errno, "epoll_ctl ADD"));
      continue;
    }
    c.state = ConnState::kConnecting;
    ++pending;
  }
  while (pending > 0 && MonotonicNanos() < deadline_ns) {
    PollOnce(deadline_ns, [&](Conn& c, uint32_t events) {
      if (c.state != ConnState::kConnecting) return;
      int error = 0;
      socklen_t len = sizeof(error);
      if (::getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) {
        error = errno;
      }
      // Neither writable nor failed: the handshake is still under way.
      if (error == 0 && (events & EPOLLOUT) == 0) return;
      --pending;
      if (error == 0) {
        c.state = ConnState::kOpen;
        ++open_;
        ++result_.established;
        return;
      }
      ConnectFailed(
          c, ErrnoMessage(
                 error, absl::StrCat("connect ", options_.target.ToString())));
    });
  }
  for (Conn& c : conns_) {
    if (c.state == ConnState::kConnecting) {
      ConnectFailed(
          c, absl::StrCat("connect ", options_.target.ToString(),
                          ": timed out after ",
                          absl::FormatDuration(options_.connect_timeout)));
    }
  }
}

void Worker::Run(const Schedule& schedule) {
  measure_start_ns_ = schedule.measure_start_ns;
  const int64_t start = MonotonicNanos();
  for (Conn& c : conns_) {
    if (c.state != ConnState::kOpen) continue;
    IssueMessages(c, start);
    Flush(c);
  }
  // Whether a message counts is decided by its completion time, so the
  // warmup/measure boundary needs no wake-up of its own.
  while (open_ > 0 && MonotonicNanos() < schedule.end_ns) {
    PollOnce(schedule.end_ns, [&](Conn& c, uint32_t events) {
      HandleEvent(c, events, MonotonicNanos());
    });
  }
  result_.loop_end_ns = MonotonicNanos();

  // Drain: issue nothing more; close each connection once all it sent has
  // come back, so that close() sends a FIN rather than a reset.
  draining_ = true;
  for (Conn& c : conns_) {
    if (c.state == ConnState::kOpen && c.received == c.sent) Close(c);
  }
  const int64_t drain_deadline =
      MonotonicNanos() + absl::ToInt64Nanoseconds(kDrainTimeout);
  while (open_ > 0 && MonotonicNanos() < drain_deadline) {
    PollOnce(drain_deadline, [&](Conn& c, uint32_t events) {
      HandleEvent(c, events, MonotonicNanos());
    });
  }
  CloseAll();
}

void Worker::CloseAll() {
  for (Conn& c : conns_) {
    if (c.state == ConnState::kOpen || c.state == ConnState::kConnecting) {
      Close(c);
    }
  }
}

void Worker::HandleEvent(Conn& c, uint32_t events, int64_t now) {
  if (c.state != ConnState::kOpen) return;
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0 &&
      !ReadAndVerify(c, events, now)) {
    return;
  }
  if (draining_) {
    if (c.received == c.sent) Close(c);
    return;
  }
  // Sends the messages just issued, or resumes a send the kernel cut short.
  Flush(c);
}

bool Worker::ReadAndVerify(Conn& c, uint32_t events, int64_t now) {
  // A short read means the receive queue was empty; with EPOLLET any byte
  // arriving later raises a new event, so reading on to EAGAIN would only
  // cost a syscall. A pending FIN or error raises no new edge, though, so
  // then read until recv() reports it.
  const bool read_to_end = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
  uint8_t* const buffer = read_buffer_.get();
  for (;;) {
    const ssize_t n = ::recv(c.fd.get(), buffer, kReadChunk, 0);
    if (n > 0) {
      if (!Verify(c, buffer, static_cast<size_t>(n))) return false;
      c.received += static_cast<uint64_t>(n);
      if (!draining_ && now >= measure_start_ns_) {
        result_.bytes += static_cast<uint64_t>(n);
      }
      CompleteMessages(c, now);
      if (static_cast<size_t>(n) < kReadChunk && !read_to_end) return true;
      continue;
    }
    if (n == 0) {
      PeerGone(c, "peer closed the connection");
      return false;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    PeerGone(c, ErrnoMessage(errno, "recv"));
    return false;
  }
}

bool Worker::Verify(Conn& c, const uint8_t* data, size_t n) {
  // The bytes beyond what was sent cannot be echoes; check the rest first so
  // a corrupted echo is reported as such.
  const size_t echo_len =
      static_cast<size_t>(std::min<uint64_t>(n, c.sent - c.received));
  const uint8_t* expected = pattern_ + (c.seed + c.received) % kPatternPeriod;
  if (std::memcmp(data, expected, echo_len) != 0) {
    size_t i = 0;
    while (data[i] == expected[i]) ++i;
    AddError(absl::StrFormat(
        "connection %d: echo mismatch at stream offset %d: expected byte "
        "0x%02x, got 0x%02x",
        c.index, c.received + i, expected[i], data[i]));
  } else if (echo_len < n) {
    AddError(absl::StrFormat(
        "connection %d: echo mismatch: received %d bytes up to stream offset "
        "%d, but only %d were sent",
        c.index, n, c.received + n, c.sent));
  } else {
    return true;
  }
  // One report per connection: after a mismatch the stream is out of step,
  // and every later byte would be reported too.
  ++result_.verification_errors;
  Close(c);
  return false;
}

void Worker::CompleteMessages(Conn& c, int64_t now) {
  const uint64_t done = c.received / options_.message_size;
  if (done == c.completed) return;
  if (!draining_ && now >= measure_start_ns_) {
    for (uint64_t m = c.completed; m < done; ++m) {
      const int64_t issued_at = c.issue_times[m % pipeline_];
      result_.latency_ns.Record(
          static_cast<uint64_t>(std::max<int64_t>(now - issued_at, 0)));
    }
    result_.messages += done - c.completed;
  }
  c.completed = done;
  if (!draining_) IssueMessages(c, now);
}

void Worker::IssueMessages(Conn& c, int64_t now) {
  // Closed loop: a message is issued when one completes, so there are always
  // `pipeline` in flight. Its latency includes time spent waiting for room
  // in the socket buffer, which is the server's back-pressure.
  while (c.issued - c.completed < pipeline_) {
    c.issue_times[c.issued % pipeline_] = now;
    ++c.issued;
  }
}

void Worker::Flush(Conn& c) {
  const uint64_t target = c.issued * options_.message_size;
  while (c.sent < target) {
    const uint8_t* from = pattern_ + (c.seed + c.sent) % kPatternPeriod;
    const size_t len =
        static_cast<size_t>(std::min<uint64_t>(target - c.sent, kSendChunk));
    // MSG_NOSIGNAL: a peer reset is an error to count, not a SIGPIPE.
    const ssize_t n = ::send(c.fd.get(), from, len, MSG_NOSIGNAL);
    if (n >= 0) {
      c.sent += static_cast<uint64_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    // EPOLLOUT (edge) resumes the send once the kernel has room.
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    PeerGone(c, ErrnoMessage(errno, "send"));
    return;
  }
}

void Worker::ConnectFailed(Conn& c, absl::string_view why) {
  if (result_.connect_failed++ == 0)
    result_.first_connect_error = std::string(why);
  c.fd.Reset();
  c.state = ConnState::kClosed;
}

void Worker::PeerGone(Conn& c, absl::string_view why) {
  // While draining, the peer may close first: nothing was lost that counts.
  if (!draining_) {
    ++result_.lost;
    AddError(absl::StrFormat("connection %d lost after %d bytes echoed: %s",
                             c.index, c.received, why));
  }
  Close(c);
}

void Worker::Close(Conn& c) {
  if (c.state == ConnState::kOpen) --open_;
  // close() also removes the descriptor from the epoll set.
  c.fd.Reset();
  c.state = ConnState::kClosed;
}

void Worker::AddError(std::string message) {
  if (result_.errors.size() < LoadReport::kMaxErrorMessages) {
    result_.errors.push_back(std::move(message));
  }
}

double ToSeconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

void AppendJsonString(std::string& out, absl::string_view s) {
  out.push_back('"');
  for (const char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          absl::StrAppendFormat(&out, "\\u%04x", u);
        } else {
          out.push_back(ch);  // UTF-8 passes through unchanged.
        }
    }
  }
  out.push_back('"');
}

double Micros(uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

}  // namespace

double LoadReport::MessagesPerSecond() const {
  const double s = ToSeconds(measured);
  return s > 0 ? static_cast<double>(messages) / s : 0.0;
}

double LoadReport::MebibytesPerSecond() const {
  const double s = ToSeconds(measured);
  return s > 0 ? static_cast<double>(bytes) / (1024.0 * 1024.0) / s : 0.0;
}

absl::Status ValidateLoadOptions(const LoadOptions& options) {
  if (options.target.length() == 0) {
    return absl::InvalidArgumentError("no target address");
  }
  if (options.target.port() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target ", options.target.ToString(), ": port must be 1..65535"));
  }
  if (options.connections < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "connections must be at least 1, got ", options.connections));
  }
  if (options.threads < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "threads must be 0 (automatic) or more, got ", options.threads));
  }
  if (options.message_size < 1 || options.message_size > kMaxMessageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("message size must be 1..", kMaxMessageSize,
                     " bytes, got ", options.message_size));
  }
  if (options.pipeline < 1 || options.pipeline > kMaxPipeline) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pipeline must be 1..", kMaxPipeline, ", got ", options.pipeline));
  }
  if (options.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("duration must be positive, got ",
                     absl::FormatDuration(options.duration)));
  }
  if (options.warmup < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("warmup must not be negative, got ",
                     absl::FormatDuration(options.warmup)));
  }
  if (options.connect_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("connect timeout must be positive, got ",
                     absl::FormatDuration(options.connect_timeout)));
  }
  return absl::OkStatus();
}

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& options) {
  if (absl::Status s = ValidateLoadOptions(options); !s.ok()) return s;
  const int n = options.connections;
  int thread_count = options.threads > 0 ? options.threads : OnlineCpus();
  thread_count = std::min(thread_count, n);

  // Contiguous slices, so connection numbers in errors map to threads simply.
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < thread_count; ++t) {
    const int first = static_cast<int>(int64_t{n} * t / thread_count);
    const int last = static_cast<int>(int64_t{n} * (t + 1) / thread_count);
    absl::StatusOr<std::unique_ptr<Worker>> w =
        Worker::Create(options, first, last - first);
    if (!w.ok()) return w.status();
    workers.push_back(*std::move(w));
  }

  Schedule schedule;
  // std::latch rather than absl::BlockingCounter/Notification: it is all
  // inline atomics, so ThreadSanitizer sees the hand-over even though the
  // distribution's Abseil is not instrumented.
  std::latch connected(thread_count);
  std::latch go(1);
  const int64_t connect_deadline =
      MonotonicNanos() + absl::ToInt64Nanoseconds(options.connect_timeout);
  std::vector<std::thread> threads;
  threads.reserve(workers.size());
  for (auto& worker : workers) {
    threads.emplace_back([&, w = worker.get()] {
      w->Connect(connect_deadline);
      connected.count_down();
      go.wait();
      if (schedule.abort) {
        w->CloseAll();
      } else {
        w->Run(schedule);
      }
    });
  }
  connected.wait();
  int established = 0;
  for (auto& w : workers) established += w->result().established;
  // Every thread starts its warmup at the same instant, after all connected.
  const int64_t start = MonotonicNanos();
  schedule.abort = established == 0;
  schedule.measure_start_ns = start + absl::ToInt64Nanoseconds(options.warmup);
  schedule.end_ns =
      schedule.measure_start_ns + absl::ToInt64Nanoseconds(options.duration);
  go.count_down();
  for (std::thread& t : threads) t.join();

  LoadReport report;
  report.target = options.target.ToString();
  report.threads = thread_count;
  report.message_size = options.message_size;
  report.pipeline = options.pipeline;
  report.connections_requested = n;
  report.warmup = options.warmup;
  std::string first_connect_error;
  int64_t loop_end_ns = schedule.measure_start_ns;
  std::vector<std::string> errors;
  for (auto& w : workers) {
    WorkerResult& r = w->result();
    report.connections_established += r.established;
    report.connections_failed += r.connect_failed;
    if (first_connect_error.empty())
      first_connect_error = r.first_connect_error;
    report.messages += r.messages;
    report.bytes += r.bytes;
    report.latency_ns.Merge(r.latency_ns);
    report.verification_errors += r.verification_errors;
    report.connections_lost += r.lost;
    for (std::string& e : r.errors) errors.push_back(std::move(e));
    loop_end_ns = std::max(loop_end_ns, r.loop_end_ns);
  }
  if (established == 0) {
    return absl::UnavailableError(absl::StrCat(
        "no connection to ", report.target, " could be established (", n,
        " tried); first error: ", first_connect_error));
  }
  report.measured = absl::Nanoseconds(loop_end_ns - schedule.measure_start_ns);
  if (report.connections_failed > 0) {
    report.first_errors.push_back(absl::StrCat(
        report.connections_failed, " of ", n,
        " connections failed to connect; first: ", first_connect_error));
  }
  for (std::string& e : errors) {
    if (report.first_errors.size() >= LoadReport::kMaxErrorMessages) break;
    report.first_errors.push_back(std::move(e));
  }
  return report;
}

std::string FormatReportText(const LoadReport& r) {
  std::string out;
  absl::StrAppendFormat(
      &out, "%-14s%s (%d thread%s, %d-byte messages, pipeline %d)\n", "target",
      r.target, r.threads, r.threads == 1 ? "" : "s", r.message_size,
      r.pipeline);
  absl::StrAppendFormat(&out, "%-14s%d requested, %d established, %d failed\n",
                        "connections", r.connections_requested,
                        r.connections_established, r.connections_failed);
  absl::StrAppendFormat(&out, "%-14s%.2f s (after %.2f s warmup)\n", "measured",
                        ToSeconds(r.measured), ToSeconds(r.warmup));
  absl::StrAppendFormat(&out, "%-14s%d (%.1f msg/s)\n", "messages", r.messages,
                        r.MessagesPerSecond());
  absl::StrAppendFormat(
      &out, "%-14s%.2f MiB/s of echoed payload (one direction, not doubled)\n",
      "throughput", r.MebibytesPerSecond());
  const LatencyHistogram& h = r.latency_ns;
  if (h.count() == 0) {
    absl::StrAppendFormat(&out, "%-14s%s\n", "latency (us)",
                          "n/a (no message completed)");
  } else {
    absl::StrAppendFormat(
        &out,
        "%-14sp50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n",
        "latency (us)", Micros(h.ValueAtPercentile(50)),
        Micros(h.ValueAtPercentile(90)), Micros(h.ValueAtPercentile(99)),
        Micros(h.ValueAtPercentile(99.9)), Micros(h.max()), h.mean() / 1000.0);
  }
  if (r.ok()) {
    absl::StrAppendFormat(&out, "%-14s%s\n", "errors", "none");
  } else {
    absl::StrAppendFormat(&out,
                          "%-14s%d (connect %d, verification %d, lost %d)\n",
                          "errors", r.error_count(), r.connections_failed,
                          r.verification_errors, r.connections_lost);
    for (const std::string& e : r.first_errors) {
      absl::StrAppend(&out, "  ", e, "\n");
    }
  }
  return out;
}

std::string FormatReportJson(const LoadReport& r) {
  const LatencyHistogram& h = r.latency_ns;
  std::string out = "{\"target\":";
  AppendJsonString(out, r.target);
  absl::StrAppendFormat(
      &out,
      ",\"threads\":%d,\"message_size\":%d,\"pipeline\":%d"
      ",\"connections\":{\"requested\":%d,\"established\":%d,\"failed\":%d}"
      ",\"warmup_s\":%.3f,\"measured_s\":%.3f"
      ",\"messages\":%d,\"messages_per_s\":%.1f"
      ",\"bytes\":%d,\"mib_per_s\":%.3f",
      r.threads, r.message_size, r.pipeline, r.connections_requested,
      r.connections_established, r.connections_failed, ToSeconds(r.warmup),
      ToSeconds(r.measured), r.messages, r.MessagesPerSecond(), r.bytes,
      r.MebibytesPerSecond());
  absl::StrAppendFormat(
      &out,
      ",\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p99_9\":%.1f"
      ",\"max\":%.1f,\"mean\":%.1f}",
      Micros(h.ValueAtPercentile(50)), Micros(h.ValueAtPercentile(90)),
      Micros(h.ValueAtPercentile(99)), Micros(h.ValueAtPercentile(99.9)),
      Micros(h.max()), h.mean() / 1000.0);
  absl::StrAppendFormat(
      &out,
      ",\"errors\":{\"total\":%d,\"connect\":%d,\"verification\":%d,"
      "\"lost\":%d,\"first\":[",
      r.error_count(), r.connections_failed, r.verification_errors,
      r.connections_lost);
  for (size_t i = 0; i < r.first_errors.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendJsonString(out, r.first_errors[i]);
  }
  absl::StrAppend(&out, "]},\"ok\":", r.ok() ? "true" : "false", "}\n");
  return out;
}

absl::Status RaiseOpenFileLimit(uint64_t wanted) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::ErrnoToStatus(errno, "getrlimit RLIMIT_NOFILE");
  }
  if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= wanted) {
    return absl::OkStatus();
  }
  if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "need ", wanted, " open files but the hard limit (ulimit -Hn) is ",
        limit.rlim_max));
  }
  limit.rlim_cur = wanted;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat("setrlimit RLIMIT_NOFILE to ", wanted));
  }
  return absl::OkStatus();
}

}  // namespace troupe
