#include "load/load_client.h"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <latch>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "core/base/check.h"
#include "core/base/fd.h"
#include "core/net/socket.h"
#include "core/base/string_view_compat.h"

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
// How long the end of a run waits for echoes still in flight, at least (the
// stall timeout when longer: an echo the run would still have waited for is
// not given up on sooner at the end).
constexpr absl::Duration kDrainTimeout = absl::Seconds(1);
// Stall checks run every stall timeout / kStallChecksPerTimeout, so a stall
// is caught at most a quarter late, for one pass over the connections per
// check; never more often than kMinStallCheckIntervalNs, so a tiny timeout
// does not turn the loop into a scan.
constexpr int64_t kStallChecksPerTimeout = 4;
constexpr int64_t kMinStallCheckIntervalNs = 1'000'000;
// Guards against typos that would allocate gigabytes of send-time rings.
constexpr int kMaxPipeline = 1 << 16;
constexpr size_t kMaxMessageSize = size_t{1} << 30;
// Connection handshakes outstanding at once, across all threads. The
// server's accept queue (net.core.somaxconn, 4096 by default) drops SYNs
// once full, and a dropped SYN costs a 1 s retransmit; a quarter of it leaves
// room for a server that accepts slower than the loopback completes
// handshakes.
constexpr int kConnectWindow = 1024;
// Share of one source address's ephemeral ports the automatic
// source_addresses choice plans to use: the rest is left for TIME_WAIT
// sockets and other programs.
constexpr double kPortsPerSourceShare = 0.8;
// Open loop: the worker threads' timer slack (prctl PR_SET_TIMERSLACK). The
// default 50 us would let sends run late by that much, all of it charged to
// the server as latency.
constexpr unsigned long kRateTimerSlackNs = 1000;

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
  int64_t start_ns = 0;  // Traffic starts (warmup, or the script).
  int64_t measure_start_ns = 0;
  int64_t end_ns = 0;
};

// Script mode's stream: every message back to back, and where each ends.
struct Script {
  std::string bytes;
  std::vector<uint64_t> ends;  // ends[k]: stream offset just past message k.
};

// What a worker publishes while it runs, for progress reports. One writer
// (the worker), any number of readers: the worker updates each counter with a
// relaxed load and store, which on x86-64 are plain moves (no locked
// instruction on the per-message path); readers load relaxed and may see
// counters a few messages apart, which a progress line tolerates.
struct alignas(64) LiveStats {
  std::atomic<uint64_t> completed{0};  // Messages echoed, warmup included.
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> established{0};
  // Latency counts per LatencyHistogram bucket, warmup included; never reset.
  std::unique_ptr<std::atomic<uint64_t>[]> buckets{
      new std::atomic<uint64_t>[LatencyHistogram::BucketCount()]()};
};

// Only the owning worker calls this, so a load and a store cannot lose an
// increment.
inline void Bump(std::atomic<uint64_t>& counter, uint64_t n) {
  counter.store(counter.load(std::memory_order_relaxed) + n,
                std::memory_order_relaxed);
}

// A worker's share of the report, and what RunLoad needs to assemble it.
struct WorkerResult {
  LoadTally counts;
  std::string first_connect_error;
  std::vector<std::string> errors;  // At most LoadReport::kMaxErrorMessages.
  int64_t loop_end_ns = 0;          // When the measured loop stopped.
};

enum class ConnState : uint8_t { kIdle, kConnecting, kOpen, kClosed };

// One client connection. Stream offsets count bytes since the connection
// opened; message k occupies stream bytes [EndOf(k), EndOf(k + 1)): with
// fixed-size messages [k * size, (k + 1) * size).
//
//   0        received          sent           EndOf(issued)
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
  uint64_t issued = 0;     // Messages issued.
  uint64_t completed = 0;  // Messages fully echoed.
  // Last progress: when a byte was received, or when the connection last
  // went from owing nothing to owing echoes. A stall is measured from here.
  int64_t progress_ns = 0;
  // Ring of `pipeline` entries, by message: when each was issued (closed
  // loop) or due (open loop).
  int64_t* issue_times = nullptr;
};

// One thread's share of the connections and its epoll loop.
// Thread safety: thread-compatible; owned by one worker thread at a time,
// except live(), which any thread may read.
class Worker {
 public:
  static absl::StatusOr<std::unique_ptr<Worker>> Create(
      const LoadOptions& options, const Script* script,
      const std::vector<Address>* sources, int first_index, int count) {
    Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll.valid()) return absl::ErrnoToStatus(errno, "epoll_create1");
    return std::unique_ptr<Worker>(new Worker(
        options, script, sources, std::move(epoll), first_index, count));
  }

  // Phase 1: opens every connection, at most `window` handshakes at a time,
  // waiting until `deadline_ns` at most.
  void Connect(int64_t deadline_ns, int window);
  // Phases 2-4: traffic until schedule.end_ns, then drains and closes.
  void Run(const Schedule& schedule);
  // Closes whatever is still open (also used when the run is aborted).
  void CloseAll();

  WorkerResult& result() { return result_; }
  const LiveStats& live() const { return live_; }  // Any thread.

 private:
  Worker(const LoadOptions& options, const Script* script,
         const std::vector<Address>* sources, Fd epoll, int first_index,
         int count)
      : options_(options),
        pipeline_(static_cast<uint64_t>(options.pipeline)),
        message_size_(options.message_size),
        pattern_(PatternTable()),
        script_(script != nullptr
                    ? reinterpret_cast<const uint8_t*>(script->bytes.data())
                    : nullptr),
        script_ends_(script != nullptr ? script->ends.data() : nullptr),
        script_count_(script != nullptr ? script->ends.size() : 0),
        sources_(*sources),
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
    // This thread's share of the rate, spread over its connections.
    if (options.rate > 0 && script == nullptr && count > 0) {
      const double share = options.rate * count / options.connections;
      rate_period_ns_ = 1e9 / share;
    }
    // Infinite means never. Any other huge value saturates at INT64_MAX
    // nanoseconds: the checks compare elapsed times against it, and the one
    // sum (the drain's deadline) saturates too.
    if (options.stall_timeout > absl::ZeroDuration() &&
        options.stall_timeout != absl::InfiniteDuration()) {
      stall_ns_ = absl::ToInt64Nanoseconds(options.stall_timeout);
    }
  }

  // Waits for events until `deadline_ns` and hands each to `handle`.
  template <typename Handler>
  void PollOnce(int64_t deadline_ns, Handler handle);

  // Starts the handshake of conns_[i]. False when it failed at once.
  bool StartConnect(size_t i);
  void HandleEvent(Conn& c, uint32_t events, int64_t now);
  // Reads until the socket is drained. False when `c` was closed.
  bool ReadAndVerify(Conn& c, uint32_t events, int64_t now);
  bool Verify(Conn& c, const uint8_t* data, size_t n);
  void CompleteMessages(Conn& c, int64_t now);
  void IssueMessages(Conn& c, int64_t now);
  // Open loop: issues every message due by `now` in schedule order.
  void IssueDue(int64_t now);
  void Flush(Conn& c);
  // Closes, as stalled, every connection that owes echoes and has made no
  // progress for stall_ns_.
  void CheckStalls(int64_t now);
  // Whether `c` waits for echoes: bytes sent and not back, or issued and not
  // yet accepted by the kernel.
  bool Owes(const Conn& c) const { return EndOf(c.issued) > c.received; }

  // The stream of `c` from `offset` on; contiguous for kPatternSlack bytes
  // (pattern) or to the end of the script.
  const uint8_t* StreamAt(const Conn& c, uint64_t offset) const {
    return script_ != nullptr
               ? script_ + offset
               : pattern_ + (c.seed + offset) % kPatternPeriod;
  }
  // Stream offset just past the first `messages` messages.
  uint64_t EndOf(uint64_t messages) const {
    if (script_ == nullptr) return messages * message_size_;
    return messages == 0 ? 0 : script_ends_[messages - 1];
  }
  // Messages fully echoed once `c.received` bytes are back.
  uint64_t CompletedBy(const Conn& c) const {
    if (script_ == nullptr) return c.received / message_size_;
    uint64_t done = c.completed;
    while (done < script_count_ && script_ends_[done] <= c.received) ++done;
    return done;
  }
  // Open loop: connection conns_[i]'s k-th message is this thread's message
  // i + k * n (n = conns_.size()), due at start + (i + k * n) * period.
  size_t LocalIndex(const Conn& c) const {
    return static_cast<size_t>(&c - conns_.data());
  }
  int64_t DueTime(const Conn& c, uint64_t k) const {
    const double seq =
        static_cast<double>(LocalIndex(c)) +
        static_cast<double>(k) * static_cast<double>(conns_.size());
    return traffic_start_ns_ + static_cast<int64_t>(seq * rate_period_ns_);
  }
  // How many of `c`'s messages are due by `now`.
  uint64_t DueCount(const Conn& c, int64_t now) const {
    const double seqs =
        std::floor(static_cast<double>(now - traffic_start_ns_) /
                   rate_period_ns_) -
        static_cast<double>(LocalIndex(c));
    if (seqs < 0) return 0;
    return static_cast<uint64_t>(seqs) / conns_.size() + 1;
  }

  void ConnectFailed(Conn& c, absl::string_view why);
  void PeerGone(Conn& c, absl::string_view why);
  // Counts `c` as incomplete (echoes owed at the end) and closes it; `why`
  // is appended to the message when not empty.
  void Incomplete(Conn& c, absl::string_view why);
  void Close(Conn& c);
  void AddError(std::string message);
  // Copies the live buckets: what they hold so far is warmup.
  void TakeWarmupSnapshot();

  const LoadOptions& options_;
  const uint64_t pipeline_;
  const uint64_t message_size_;
  const uint8_t* const pattern_;  // Shared, read-only.
  const uint8_t* const script_;   // Shared, read-only; null unless script mode.
  const uint64_t* const script_ends_;
  const uint64_t script_count_;
  const std::vector<Address>& sources_;  // Empty: let the kernel choose.
  Fd epoll_;
  std::vector<Conn> conns_;           // Never resized: epoll data indexes it.
  std::vector<int64_t> issue_times_;  // conns_.size() * pipeline_ entries.
  std::unique_ptr<uint8_t[]> read_buffer_;
  epoll_event events_[kMaxEvents];
  int open_ = 0;
  bool draining_ = false;
  int64_t measure_start_ns_ = 0;
  // Open loop; rate_period_ns_ == 0 means closed loop.
  double rate_period_ns_ = 0;
  int64_t stall_ns_ = 0;  // 0: no stall check.
  int64_t traffic_start_ns_ = 0;
  uint64_t next_seq_ = 0;  // This thread's next message to issue on time.
  bool warmup_snapshot_taken_ = false;
  std::vector<uint64_t> warmup_buckets_;
  LiveStats live_;
  WorkerResult result_;
};

template <typename Handler>
void Worker::PollOnce(int64_t deadline_ns, Handler handle) {
  // epoll_pwait2 (Linux 5.11) takes a nanosecond timeout, which the open
  // loop needs to send on time; epoll_wait's milliseconds are the fallback.
  static std::atomic<bool> no_pwait2{false};
  const int64_t wait_ns = std::max<int64_t>(deadline_ns - MonotonicNanos(), 0);
  int n = -1;
  if (!no_pwait2.load(std::memory_order_relaxed)) {
    const timespec timeout{static_cast<time_t>(wait_ns / 1'000'000'000),
                           static_cast<long>(wait_ns % 1'000'000'000)};
    n = ::epoll_pwait2(epoll_.get(), events_, kMaxEvents, &timeout, nullptr);
    if (n < 0 && errno == ENOSYS) no_pwait2.store(true);
  }
  if (no_pwait2.load(std::memory_order_relaxed)) {
    n = ::epoll_wait(epoll_.get(), events_, kMaxEvents, TimeoutMs(wait_ns));
  }
  if (n < 0) {
    TROUPE_CHECK(errno == EINTR, "epoll_wait failed on a valid epoll fd");
    return;
  }
  for (int i = 0; i < n; ++i) {
    handle(conns_[events_[i].data.u64], events_[i].events);
  }
}

bool Worker::StartConnect(size_t i) {
  Conn& c = conns_[i];
  const Address* source =
      sources_.empty()
          ? nullptr
          : &sources_[static_cast<size_t>(c.index) % sources_.size()];
  absl::StatusOr<Fd> fd = ConnectTcpNonBlocking(options_.target, source);
  if (!fd.ok()) {
    ConnectFailed(c, fd.status().message());
    return false;
  }
  c.fd = *std::move(fd);
  // Edge-triggered: the loop always reads and writes until EAGAIN (or a
  // short read, see ReadAndVerify), so it never needs epoll_ctl again.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = i;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev) != 0) {
    ConnectFailed(c, ErrnoMessage(errno, "epoll_ctl ADD"));
    return false;
  }
  c.state = ConnState::kConnecting;
  return true;
}

void Worker::Connect(int64_t deadline_ns, int window) {
  int pending = 0;
  size_t next = 0;
  auto start_more = [&] {
    while (pending < window && next < conns_.size()) {
      if (StartConnect(next++)) ++pending;
    }
  };
  start_more();
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
        ++result_.counts.connections_established;
        Bump(live_.established, 1);
        return;
      }
      ConnectFailed(
          c, ErrnoMessage(
                 error, absl::StrCat("connect ", options_.target.ToString())));
    });
    start_more();
  }
  const std::string timed_out =
      absl::StrCat("connect ", options_.target.ToString(), ": timed out after ",
                   absl::FormatDuration(options_.connect_timeout));
  for (size_t i = 0; i < conns_.size(); ++i) {
    Conn& c = conns_[i];
    if (c.state == ConnState::kConnecting) {
      ConnectFailed(c, timed_out);
    } else if (i >= next) {
      ConnectFailed(c, absl::StrCat(timed_out, " (not attempted)"));
    }
  }
}

void Worker::Run(const Schedule& schedule) {
  measure_start_ns_ = schedule.measure_start_ns;
  traffic_start_ns_ = schedule.start_ns;
  warmup_buckets_.assign(LatencyHistogram::BucketCount(), 0);
  if (rate_period_ns_ > 0) {
    // Best effort: without it, sends are merely later, and measured so.
    (void)::prctl(PR_SET_TIMERSLACK, kRateTimerSlackNs);
  } else {
    const int64_t start = MonotonicNanos();
    for (Conn& c : conns_) {
      if (c.state != ConnState::kOpen) continue;
      IssueMessages(c, start);
      Flush(c);
    }
  }
  // Whether a message counts is decided by its completion time, so the
  // warmup/measure boundary needs no wake-up of its own.
  const int64_t stall_check_interval =
      std::max(stall_ns_ / kStallChecksPerTimeout, kMinStallCheckIntervalNs);
  int64_t next_stall_check = schedule.start_ns + stall_check_interval;
  while (open_ > 0 && MonotonicNanos() < schedule.end_ns) {
    int64_t wake = schedule.end_ns;
    if (stall_ns_ > 0) {
      const int64_t now = MonotonicNanos();
      if (now >= next_stall_check) {
        CheckStalls(now);
        next_stall_check = now + stall_check_interval;
        if (open_ == 0) break;
      }
      wake = std::min(wake, next_stall_check);
    }
    if (rate_period_ns_ > 0) {
      IssueDue(MonotonicNanos());
      wake = std::min(wake, traffic_start_ns_ +
                                static_cast<int64_t>(
                                    static_cast<double>(next_seq_) *
                                    rate_period_ns_));
    }
    PollOnce(wake, [&](Conn& c, uint32_t events) {
      HandleEvent(c, events, MonotonicNanos());
    });
  }
  result_.loop_end_ns = MonotonicNanos();
  if (!warmup_snapshot_taken_) TakeWarmupSnapshot();

  draining_ = true;
  if (script_ != nullptr) {
    // Whoever is still open has not had all its messages echoed in time.
    for (Conn& c : conns_) {
      if (c.state != ConnState::kOpen) continue;
      ++result_.counts.connections_timed_out;
      Bump(live_.errors, 1);
      AddError(absl::StrFormat(
          "connection %d timed out after %d of %d messages echoed", c.index,
          c.completed, script_count_));
    }
    CloseAll();
  }
  // Drain: issue nothing more; close each connection once all it sent has
  // come back, so that close() sends a FIN rather than a reset.
  for (Conn& c : conns_) {
    if (c.state == ConnState::kOpen && c.received == c.sent) Close(c);
  }
  const int64_t drain_start = MonotonicNanos();
  const int64_t drain_ns =
      std::max(absl::ToInt64Nanoseconds(kDrainTimeout), stall_ns_);
  const int64_t drain_deadline =
      drain_start +
      std::min(drain_ns, std::numeric_limits<int64_t>::max() - drain_start);
  while (open_ > 0 && MonotonicNanos() < drain_deadline) {
    PollOnce(drain_deadline, [&](Conn& c, uint32_t events) {
      HandleEvent(c, events, MonotonicNanos());
    });
  }
  // Whoever is still open owes echoes that did not come back in time: a
  // server that dropped bytes, or stopped, near the end of the run.
  for (Conn& c : conns_) {
    if (c.state == ConnState::kOpen) Incomplete(c, "");
  }

  const size_t buckets = LatencyHistogram::BucketCount();
  result_.counts.latency_buckets.resize(buckets);
  for (size_t i = 0; i < buckets; ++i) {
    result_.counts.latency_buckets[i] =
        live_.buckets[i].load(std::memory_order_relaxed) - warmup_buckets_[i];
  }
}

void Worker::TakeWarmupSnapshot() {
  warmup_snapshot_taken_ = true;
  for (size_t i = 0; i < warmup_buckets_.size(); ++i) {
    warmup_buckets_[i] = live_.buckets[i].load(std::memory_order_relaxed);
  }
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
      c.progress_ns = now;
      if (!draining_ && now >= measure_start_ns_) {
        result_.counts.bytes += static_cast<uint64_t>(n);
      }
      CompleteMessages(c, now);
      if (c.state != ConnState::kOpen) return false;  // Script finished.
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
  const uint8_t* expected = StreamAt(c, c.received);
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
  ++result_.counts.verification_errors;
  Bump(live_.errors, 1);
  Close(c);
  return false;
}

void Worker::CompleteMessages(Conn& c, int64_t now) {
  const uint64_t done = CompletedBy(c);
  if (done == c.completed) return;
  if (!draining_) {
    const bool measured = now >= measure_start_ns_;
    if (measured && !warmup_snapshot_taken_) TakeWarmupSnapshot();
    for (uint64_t m = c.completed; m < done; ++m) {
      const int64_t issued_at = c.issue_times[m % pipeline_];
      const uint64_t latency =
          static_cast<uint64_t>(std::max<int64_t>(now - issued_at, 0));
      Bump(live_.buckets[LatencyHistogram::BucketIndex(latency)], 1);
      if (measured) result_.counts.latency_ns.Record(latency);
    }
    Bump(live_.completed, done - c.completed);
    if (measured) result_.counts.messages += done - c.completed;
  }
  c.completed = done;
  if (script_ != nullptr && done == script_count_) {
    // All echoed: the script is over for this connection (a FIN, since
    // nothing is left unread).
    Close(c);
    return;
  }
  if (!draining_) IssueMessages(c, now);
}

void Worker::IssueMessages(Conn& c, int64_t now) {
  // Closed loop: a message is issued when one completes, so there are always
  // `pipeline` in flight. Its latency includes time spent waiting for room
  // in the socket buffer, which is the server's back-pressure.
  uint64_t limit = c.completed + pipeline_;
  if (script_ != nullptr) limit = std::min(limit, script_count_);
  // Owing nothing until now: the wait for an echo (a stall) starts here, not
  // at the last echo, which may be long ago in the open loop.
  if (!Owes(c)) c.progress_ns = now;
  if (rate_period_ns_ > 0) {
    // Open loop: only what is due, stamped with when it was due.
    limit = std::min(limit, DueCount(c, now));
    for (; c.issued < limit; ++c.issued) {
      c.issue_times[c.issued % pipeline_] = DueTime(c, c.issued);
    }
    return;
  }
  for (; c.issued < limit; ++c.issued) {
    c.issue_times[c.issued % pipeline_] = now;
  }
}

void Worker::IssueDue(int64_t now) {
  const double due =
      std::floor(static_cast<double>(now - traffic_start_ns_) /
                 rate_period_ns_) +
      1;
  if (due <= static_cast<double>(next_seq_)) return;
  const uint64_t due_seq = static_cast<uint64_t>(due);
  const uint64_t n = conns_.size();
  // A message whose window is full is not lost: CompleteMessages issues it
  // (with its due time) once an echo makes room.
  for (; next_seq_ < due_seq; ++next_seq_) {
    Conn& c = conns_[next_seq_ % n];
    if (c.state != ConnState::kOpen) continue;
    const uint64_t before = c.issued;
    IssueMessages(c, now);
    if (c.issued != before) Flush(c);
  }
}

void Worker::Flush(Conn& c) {
  const uint64_t target = EndOf(c.issued);
  while (c.sent < target) {
    const uint8_t* from = StreamAt(c, c.sent);
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
  if (result_.counts.connections_failed++ == 0)
    result_.first_connect_error = std::string(why);
  Bump(live_.errors, 1);
  c.fd.Reset();
  c.state = ConnState::kClosed;
}

void Worker::PeerGone(Conn& c, absl::string_view why) {
  if (draining_) {
    // The peer may close first once everything is back; before that, it
    // took echoes with it.
    if (c.received < c.sent) {
      Incomplete(c, why);
      return;
    }
  } else {
    ++result_.counts.connections_lost;
    Bump(live_.errors, 1);
    AddError(absl::StrFormat("connection %d lost after %d bytes echoed: %s",
                             c.index, c.received, why));
  }
  Close(c);
}

void Worker::Incomplete(Conn& c, absl::string_view why) {
  ++result_.counts.connections_incomplete;
  Bump(live_.errors, 1);
  std::string message =
      absl::StrFormat("connection %d incomplete: %d of %d sent bytes echoed",
                      c.index, c.received, c.sent);
  if (!why.empty()) absl::StrAppend(&message, " (", why, ")");
  AddError(std::move(message));
  Close(c);
}

void Worker::CheckStalls(int64_t now) {
  for (Conn& c : conns_) {
    if (c.state != ConnState::kOpen || !Owes(c)) continue;
    if (now - c.progress_ns < stall_ns_) continue;
    ++result_.counts.connections_stalled;
    Bump(live_.errors, 1);
    std::string message = absl::StrFormat(
        "connection %d stalled: no byte received in %s with %d of %d sent "
        "bytes echoed",
        c.index, absl::FormatDuration(options_.stall_timeout), c.received,
        c.sent);
    const uint64_t unsent = EndOf(c.issued) - c.sent;
    if (unsent > 0) {
      absl::StrAppendFormat(&message,
                            " and %d more the kernel would not take", unsent);
    }
    AddError(std::move(message));
    Close(c);
  }
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

// Source addresses 127.0.0.1 .. 127.0.0.N, or none when the kernel may
// choose (N == 1).
absl::StatusOr<std::vector<Address>> SourceAddresses(
    const LoadOptions& options, int* count) {
  int n = options.source_addresses;
  const bool loopback_v4 =
      options.target.family() == AF_INET &&
      (ntohl(reinterpret_cast<const sockaddr_in*>(options.target.sockaddr_ptr())
                 ->sin_addr.s_addr) >>
       24) == 127;
  if (n == 0) {
    n = 1;
    int low = 0;
    int high = 0;
    std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
    if (loopback_v4 && (range >> low >> high) && high >= low) {
      const double per_source = (high - low + 1) * kPortsPerSourceShare;
      n = std::max(1, static_cast<int>(std::ceil(options.connections /
                                                 per_source)));
    }
  }
  *count = n;
  std::vector<Address> sources;
  if (n == 1) return sources;
  if (!loopback_v4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "source addresses 127.0.0.1..127.0.0.", n, " need a 127.x target, not ",
        options.target.ToString()));
  }
  for (int i = 1; i <= n; ++i) {
    absl::StatusOr<Address> a = Address::FromHostPort(
        AsStd(absl::StrCat("127.0.", i / 256, ".", i % 256)), 0);
    if (!a.ok()) return a.status();
    sources.push_back(*a);
  }
  return sources;
}

// Turns the workers' live counters into LoadProgress snapshots.
// Thread safety: thread-compatible; used by RunLoad's thread only.
class ProgressReporter {
 public:
  ProgressReporter(const LoadOptions& options,
                   const std::vector<std::unique_ptr<Worker>>& workers,
                   int64_t connect_start_ns)
      : options_(options),
        workers_(workers),
        connect_start_ns_(connect_start_ns),
        previous_buckets_(LatencyHistogram::BucketCount(), 0),
        buckets_(LatencyHistogram::BucketCount(), 0) {}

  // Called once when the traffic starts: intervals start there.
  void StartTraffic(const Schedule* schedule) {
    schedule_ = schedule;
    previous_ns_ = schedule->start_ns;
  }

  LoadProgress Snapshot() {
    const int64_t now = MonotonicNanos();
    LoadProgress p;
    p.connections_requested = options_.connections;
    uint64_t completed = 0;
    for (const auto& w : workers_) {
      const LiveStats& live = w->live();
      p.connections_established += static_cast<int>(
          live.established.load(std::memory_order_relaxed));
      p.errors += live.errors.load(std::memory_order_relaxed);
      completed += live.completed.load(std::memory_order_relaxed);
    }
    p.messages_completed = completed;
    if (!options_.messages.empty()) {
      p.messages_planned =
          static_cast<uint64_t>(options_.connections) * options_.messages.size();
    }
    if (schedule_ == nullptr) {
      p.phase = LoadProgress::Phase::kConnecting;
      p.elapsed = absl::Nanoseconds(now - connect_start_ns_);
      p.total = options_.connect_timeout;
      return p;
    }
    const Schedule& s = *schedule_;
    if (!options_.messages.empty() && now < s.end_ns) {
      p.phase = LoadProgress::Phase::kScript;
      p.elapsed = absl::Nanoseconds(now - s.start_ns);
      p.total = options_.script_timeout;
    } else if (now < s.measure_start_ns) {
      p.phase = LoadProgress::Phase::kWarmup;
      p.elapsed = absl::Nanoseconds(now - s.start_ns);
      p.total = options_.warmup;
    } else if (now < s.end_ns) {
      p.phase = LoadProgress::Phase::kMeasuring;
      p.elapsed = absl::Nanoseconds(now - s.measure_start_ns);
      p.total = options_.duration;
    } else {
      p.phase = LoadProgress::Phase::kDraining;
    }

    p.interval = absl::Nanoseconds(now - previous_ns_);
    p.interval_messages = completed - std::min(completed, previous_completed_);
    std::fill(buckets_.begin(), buckets_.end(), 0);
    for (const auto& w : workers_) {
      const LiveStats& live = w->live();
      for (size_t i = 0; i < buckets_.size(); ++i) {
        buckets_[i] += live.buckets[i].load(std::memory_order_relaxed);
      }
    }
    uint64_t interval_total = 0;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      const uint64_t now_count = buckets_[i];
      buckets_[i] = now_count - previous_buckets_[i];
      previous_buckets_[i] = now_count;
      interval_total += buckets_[i];
    }
    if (interval_total > 0) {
      p.interval_p99_ns = LatencyHistogram::BucketHighest(
          LatencyHistogram::BucketAtPercentile(buckets_, interval_total, 99));
    }
    previous_ns_ = now;
    previous_completed_ = completed;
    return p;
  }

 private:
  const LoadOptions& options_;
  const std::vector<std::unique_ptr<Worker>>& workers_;
  const int64_t connect_start_ns_;
  const Schedule* schedule_ = nullptr;  // Null while connecting.
  int64_t previous_ns_ = 0;
  uint64_t previous_completed_ = 0;
  std::vector<uint64_t> previous_buckets_;  // Summed over workers.
  std::vector<uint64_t> buckets_;           // Scratch: this interval's.
};

}  // namespace

double LoadProgress::IntervalMessagesPerSecond() const {
  const double s = absl::ToDoubleSeconds(interval);
  return s > 0 ? static_cast<double>(interval_messages) / s : 0.0;
}

void LoadTally::Add(const LoadTally& other) {
  connections_established += other.connections_established;
  connections_failed += other.connections_failed;
  messages += other.messages;
  bytes += other.bytes;
  latency_ns.Merge(other.latency_ns);
  if (latency_buckets.size() < other.latency_buckets.size()) {
    latency_buckets.resize(other.latency_buckets.size(), 0);
  }
  for (size_t i = 0; i < other.latency_buckets.size(); ++i) {
    latency_buckets[i] += other.latency_buckets[i];
  }
  verification_errors += other.verification_errors;
  connections_lost += other.connections_lost;
  connections_timed_out += other.connections_timed_out;
  connections_incomplete += other.connections_incomplete;
  connections_stalled += other.connections_stalled;
}

double LoadReport::MessagesPerSecond() const {
  const double s = absl::ToDoubleSeconds(measured);
  return s > 0 ? static_cast<double>(messages) / s : 0.0;
}

double LoadReport::MebibytesPerSecond() const {
  const double s = absl::ToDoubleSeconds(measured);
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
  // `!(x >= 0)` also catches NaN.
  if (!(options.rate >= 0) || std::isinf(options.rate)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rate must be 0 (closed loop) or a positive number, got ",
        options.rate));
  }
  if (!options.messages.empty()) {
    if (options.rate > 0) {
      return absl::InvalidArgumentError(
          "a message list (script mode) cannot be sent at a fixed rate");
    }
    size_t total = 0;
    for (size_t i = 0; i < options.messages.size(); ++i) {
      if (options.messages[i].empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "message ", i + 1, " is empty: an empty message has no echo"));
      }
      total += options.messages[i].size();
    }
    if (total > kMaxMessageSize) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the messages add up to ", total, " bytes; at most ",
          kMaxMessageSize));
    }
    if (options.script_timeout <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("script timeout must be positive, got ",
                       absl::FormatDuration(options.script_timeout)));
    }
  }
  if (options.source_addresses < 0 || options.source_addresses > 65534) {
    return absl::InvalidArgumentError(absl::StrCat(
        "source addresses must be 0 (automatic) or 1..65534, got ",
        options.source_addresses));
  }
  if (options.progress_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("progress interval must not be negative, got ",
                     absl::FormatDuration(options.progress_interval)));
  }
  if (options.stall_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("stall timeout must not be negative, got ",
                     absl::FormatDuration(options.stall_timeout)));
  }
  return absl::OkStatus();
}

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& options) {
  if (absl::Status s = ValidateLoadOptions(options); !s.ok()) return s;
  const int n = options.connections;
  int thread_count = options.threads > 0 ? options.threads : OnlineCpus();
  thread_count = std::min(thread_count, n);
  const bool script_mode = !options.messages.empty();

  int source_count = 1;
  absl::StatusOr<std::vector<Address>> sources =
      SourceAddresses(options, &source_count);
  if (!sources.ok()) return sources.status();
  std::unique_ptr<Script> script;
  if (script_mode) {
    script = std::make_unique<Script>();
    for (const std::string& m : options.messages) {
      script->bytes += m;
      script->ends.push_back(script->bytes.size());
    }
  }

  // Contiguous slices, so connection numbers in errors map to threads simply.
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < thread_count; ++t) {
    const int first = static_cast<int>(int64_t{n} * t / thread_count);
    const int last = static_cast<int>(int64_t{n} * (t + 1) / thread_count);
    absl::StatusOr<std::unique_ptr<Worker>> w = Worker::Create(
        options, script.get(), &*sources, first, last - first);
    if (!w.ok()) return w.status();
    workers.push_back(*std::move(w));
  }

  Schedule schedule;
  // std::latch and std::mutex rather than absl::Notification/Mutex: they are
  // inline atomics and pthreads, so ThreadSanitizer sees the hand-over even
  // though the distribution's Abseil is not instrumented.
  std::mutex mu;
  std::condition_variable changed;
  int connected_threads = 0;  // Guarded by mu.
  int finished_threads = 0;   // Guarded by mu.
  std::latch go(1);
  const int64_t connect_start = MonotonicNanos();
  const int64_t connect_deadline =
      connect_start + absl::ToInt64Nanoseconds(options.connect_timeout);
  const int window = std::max(1, kConnectWindow / thread_count);
  std::vector<std::thread> threads;
  threads.reserve(workers.size());
  for (auto& worker : workers) {
    threads.emplace_back([&, w = worker.get()] {
      w->Connect(connect_deadline, window);
      {
        std::lock_guard<std::mutex> lock(mu);
        ++connected_threads;
      }
      changed.notify_all();
      go.wait();
      if (schedule.abort) {
        w->CloseAll();
      } else {
        w->Run(schedule);
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        ++finished_threads;
      }
      changed.notify_all();
    });
  }

  // This thread waits, and reports progress on the way if asked to.
  ProgressReporter reporter(options, workers, connect_start);
  const bool report_progress =
      options.on_progress && options.progress_interval > absl::ZeroDuration();
  const auto interval = std::chrono::nanoseconds(
      absl::ToInt64Nanoseconds(options.progress_interval));
  auto wait_for_all = [&](const int& counter) {
    std::unique_lock<std::mutex> lock(mu);
    auto next = std::chrono::steady_clock::now() + interval;
    const auto done = [&] { return counter == thread_count; };
    while (!done()) {
      if (!report_progress) {
        changed.wait(lock, done);
        break;
      }
      if (changed.wait_until(lock, next, done)) break;
      lock.unlock();
      options.on_progress(reporter.Snapshot());
      lock.lock();
      next += interval;
    }
  };
  wait_for_all(connected_threads);
  int established = 0;
  for (auto& w : workers) {
    established += w->result().counts.connections_established;
  }
  // Every thread starts its traffic at the same instant, after all connected.
  const int64_t start = MonotonicNanos();
  schedule.abort = established == 0;
  schedule.start_ns = start;
  if (script_mode) {
    schedule.measure_start_ns = start;
    schedule.end_ns = start + absl::ToInt64Nanoseconds(options.script_timeout);
  } else {
    schedule.measure_start_ns =
        start + absl::ToInt64Nanoseconds(options.warmup);
    schedule.end_ns =
        schedule.measure_start_ns + absl::ToInt64Nanoseconds(options.duration);
  }
  reporter.StartTraffic(&schedule);
  go.count_down();
  wait_for_all(finished_threads);
  for (std::thread& t : threads) t.join();

  LoadReport report;
  report.target = options.target.ToString();
  report.threads = thread_count;
  report.message_size = script_mode ? 0 : options.message_size;
  report.pipeline = options.pipeline;
  report.rate = script_mode ? 0 : options.rate;
  report.source_addresses = source_count;
  if (script) {
    report.script_messages = script->ends.size();
    report.script_bytes = script->bytes.size();
  }
  report.connections_requested = n;
  report.warmup = script_mode ? absl::ZeroDuration() : options.warmup;
  report.latency_buckets.assign(LatencyHistogram::BucketCount(), 0);
  std::string first_connect_error;
  int64_t loop_end_ns = schedule.measure_start_ns;
  std::vector<std::string> errors;
  for (auto& w : workers) {
    WorkerResult& r = w->result();
    report.Add(r.counts);
    if (first_connect_error.empty())
      first_connect_error = r.first_connect_error;
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
  // A run that measured nothing says nothing about the server, however clean
  // it looks: a server that accepts and never echoes must not pass. Script
  // mode counts its completions over the whole script, so the same rule
  // holds there.
  report.no_messages = report.messages == 0;
  if (report.no_messages) {
    report.first_errors.push_back(
        script_mode ? "no message of the script was echoed completely"
                    : "no message completed in the measured window");
  }
  for (std::string& e : errors) {
    if (report.first_errors.size() >= LoadReport::kMaxErrorMessages) break;
    report.first_errors.push_back(std::move(e));
  }
  return report;
}

}  // namespace troupe
