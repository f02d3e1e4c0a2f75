#include "load/chat.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <latch>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "load/chat_room.h"
#include "load/chat_worker.h"
#include "load/load_client.h"
#include "load/schedule.h"
#include "load/source_addresses.h"

namespace troupe {
namespace {

// Handshakes outstanding at once across all threads: load_client.cc's
// kConnectWindow, for the same reason (the server's accept queue).
constexpr int kConnectWindow = 1024;
// Guards against typos: the rings hold talkers x pipeline counters per thread.
constexpr int kMaxPipeline = 1 << 16;
constexpr int kMaxTalkers = 1 << 16;
// The server's longest line is echo-cluster's --max-line (64 KiB by
// default); past this, a typo.
constexpr size_t kMaxLineSize = size_t{1} << 24;
// Each thread keeps talkers x pipeline ring counters (4 bytes) and members x
// talkers next-line numbers (8 bytes): bounds of 64 MiB and 1 GiB.
constexpr int64_t kMaxRingCounters = int64_t{1} << 24;
constexpr int64_t kMaxNextLines = int64_t{1} << 27;

int OnlineCpus() {
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

absl::Status Positive(absl::string_view what, absl::Duration d) {
  if (d > absl::ZeroDuration()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " must be positive, got ", absl::FormatDuration(d)));
}

}  // namespace

void ChatCounts::Add(const ChatCounts& other) {
  lines_sent += other.lines_sent;
  lines_measured += other.lines_measured;
  deliveries += other.deliveries;
  deliveries_measured += other.deliveries_measured;
  latency_ns.Merge(other.latency_ns);
  LatencyHistogram::AddCounts(latency_buckets, other.latency_buckets);
  lost += other.lost;
  duplicates += other.duplicates;
  reordered += other.reordered;
  corrupt += other.corrupt;
  closed += other.closed;
  stalled += other.stalled;
}

double ChatReport::DeliveriesPerSecond() const {
  const double s = absl::ToDoubleSeconds(measured);
  return s > 0 ? static_cast<double>(deliveries_measured) / s : 0.0;
}

double ChatReport::LinesPerSecond() const {
  const double s = absl::ToDoubleSeconds(measured);
  return s > 0 ? static_cast<double>(lines_measured) / s : 0.0;
}

absl::Status ValidateChatOptions(const ChatOptions& o) {
  if (o.target.length() == 0) return absl::InvalidArgumentError("no target address");
  if (o.target.port() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("target ", o.target.ToString(), ": port must be 1..65535"));
  }
  if (o.members < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("a chat room needs 2 members (connections) at least, got ", o.members));
  }
  if (o.talkers < 1 || o.talkers > std::min(o.members, kMaxTalkers)) {
    return absl::InvalidArgumentError(absl::StrCat("talkers must be 1..",
                                                   std::min(o.members, kMaxTalkers),
                                                   " (at most the connections), got ", o.talkers));
  }
  if (o.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("threads must be 0 (automatic) or more, got ", o.threads));
  }
  if (o.line_size < 1 || o.line_size > kMaxLineSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("line size must be 1..", kMaxLineSize, " bytes, got ", o.line_size));
  }
  if (o.pipeline < 1 || o.pipeline > kMaxPipeline) {
    return absl::InvalidArgumentError(
        absl::StrCat("pipeline must be 1..", kMaxPipeline, ", got ", o.pipeline));
  }
  if (int64_t{o.talkers} * o.pipeline > kMaxRingCounters) {
    return absl::InvalidArgumentError(absl::StrCat("talkers x pipeline must be at most ",
                                                   kMaxRingCounters, ", got ", o.talkers, " x ",
                                                   o.pipeline));
  }
  if (int64_t{o.talkers} * o.members > kMaxNextLines) {
    return absl::InvalidArgumentError(absl::StrCat("talkers x connections must be at most ",
                                                   kMaxNextLines, ", got ", o.talkers, " x ",
                                                   o.members));
  }
  // `!(x >= 0)` also catches NaN.
  if (!(o.rate >= 0) || std::isinf(o.rate)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rate must be 0 (closed loop) or a positive number, got ", o.rate));
  }
  if (absl::Status s = Positive("duration", o.duration); !s.ok()) return s;
  if (o.warmup < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("warmup must not be negative");
  }
  if (absl::Status s = Positive("connect timeout", o.connect_timeout); !s.ok()) return s;
  if (o.stall_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("stall timeout must not be negative");
  }
  if (o.source_addresses < 0 || o.source_addresses > 65534) {
    return absl::InvalidArgumentError(absl::StrCat(
        "source addresses must be 0 (automatic) or 1..65534, got ", o.source_addresses));
  }
  return absl::OkStatus();
}

absl::StatusOr<ChatReport> RunChat(const ChatOptions& options) {
  if (absl::Status s = ValidateChatOptions(options); !s.ok()) return s;
  const int n = options.members;
  const int thread_count = std::min(options.threads > 0 ? options.threads : OnlineCpus(), n);

  // The echo load's rule for source addresses, for as many connections.
  LoadOptions for_sources;
  for_sources.target = options.target;
  for_sources.connections = n;
  for_sources.source_addresses = options.source_addresses;
  int source_count = 1;
  absl::StatusOr<std::vector<Address>> sources = load::SourceAddresses(for_sources, &source_count);
  if (!sources.ok()) return sources.status();

  absl::StatusOr<std::unique_ptr<load::ChatRoom>> room =
      load::ChatRoom::Create(thread_count, options.talkers);
  if (!room.ok()) return room.status();
  std::vector<std::unique_ptr<load::ChatWorker>> workers;
  for (int t = 0; t < thread_count; ++t) {
    const int first = static_cast<int>(int64_t{n} * t / thread_count);
    const int last = static_cast<int>(int64_t{n} * (t + 1) / thread_count);
    absl::StatusOr<std::unique_ptr<load::ChatWorker>> w =
        load::ChatWorker::Create(options, **room, *sources, t, first, last - first);
    if (!w.ok()) return w.status();
    workers.push_back(*std::move(w));
  }

  // The threads meet three times: connected, joined, finished. std::mutex
  // and std::latch, not absl's, so that ThreadSanitizer sees the hand-overs
  // (load_client.cc says why).
  std::mutex mu;
  std::condition_variable changed;
  int connected = 0;   // Guarded by mu.
  int joined = 0;      // Guarded by mu.
  int finished = 0;    // Guarded by mu.
  bool abort = false;  // Written before a latch opens, read after.
  int64_t join_deadline = 0;
  load::PhaseTimes times;
  std::latch join_go(1);
  std::latch go(1);
  const auto arrive = [&](int& counter) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++counter;
    }
    changed.notify_all();
  };
  const auto wait_all = [&](const int& counter) {
    std::unique_lock<std::mutex> lock(mu);
    changed.wait(lock, [&] { return counter == thread_count; });
  };
  const int64_t connect_deadline =
      load::MonotonicNanos() + absl::ToInt64Nanoseconds(options.connect_timeout);
  const int window = std::max(1, kConnectWindow / thread_count);
  std::vector<std::thread> threads;
  threads.reserve(workers.size());
  for (auto& worker : workers) {
    threads.emplace_back([&, w = worker.get()] {
      w->Connect(connect_deadline, window);
      arrive(connected);
      join_go.wait();
      if (!abort) w->Join(join_deadline);
      arrive(joined);
      go.wait();
      if (abort) {
        w->CloseAll();
      } else {
        w->Run(times);
      }
      arrive(finished);
    });
  }
  const auto stop = [&](absl::Status why) -> absl::StatusOr<ChatReport> {
    abort = true;
    join_go.count_down();
    wait_all(joined);
    go.count_down();
    for (std::thread& t : threads) t.join();
    return why;
  };

  wait_all(connected);
  int established = 0;
  std::string first_error;
  for (auto& w : workers) {
    established += w->result().connected;
    if (first_error.empty()) first_error = w->result().first_connect_error;
  }
  if (established < n) {
    return stop(absl::UnavailableError(
        absl::StrCat(n - established, " of ", n, " members could not connect to ",
                     options.target.ToString(), "; first error: ", first_error)));
  }
  const int64_t join_start = load::MonotonicNanos();
  join_deadline = join_start + absl::ToInt64Nanoseconds(options.connect_timeout);
  join_go.count_down();
  wait_all(joined);
  if ((*room)->joined() < n - 1) {
    abort = true;
    go.count_down();
    for (std::thread& t : threads) t.join();
    return absl::UnavailableError(
        absl::StrCat("the room never held every member: ", (*room)->joined(), " of the ", n - 1,
                     " other members got member 0's hello within ",
                     absl::FormatDuration(options.connect_timeout), " (is ",
                     options.target.ToString(), " a chat server?)"));
  }
  // Every thread starts its traffic at the same instant.
  const int64_t start = load::MonotonicNanos();
  times.start_ns = start;
  times.measure_start_ns = start + absl::ToInt64Nanoseconds(options.warmup);
  times.end_ns = times.measure_start_ns + absl::ToInt64Nanoseconds(options.duration);
  go.count_down();
  wait_all(finished);
  for (std::thread& t : threads) t.join();

  ChatReport report;
  report.target = options.target.ToString();
  report.threads = thread_count;
  report.members = n;
  report.talkers = options.talkers;
  report.line_size = options.line_size;
  report.pipeline = options.pipeline;
  report.rate = options.rate;
  report.source_addresses = source_count;
  report.warmup = options.warmup;
  report.latency_buckets.assign(LatencyHistogram::BucketCount(), 0);
  int64_t loop_end_ns = times.measure_start_ns;
  std::vector<std::string> errors;
  for (auto& w : workers) {
    load::ChatResult& r = w->result();
    report.Add(r.counts);
    for (std::string& e : r.errors) errors.push_back(std::move(e));
    loop_end_ns = std::max(loop_end_ns, r.loop_end_ns);
  }
  report.measured = absl::Nanoseconds(loop_end_ns - times.measure_start_ns);
  report.expected_deliveries = report.lines_sent * static_cast<uint64_t>(n - 1);
  // As the echo load's no_messages: a run that delivered nothing measured
  // nothing, however clean it looks.
  report.no_deliveries = report.deliveries_measured == 0;
  if (report.no_deliveries) {
    report.first_errors.push_back("no line was delivered in the measured window");
  }
  for (std::string& e : errors) {
    if (report.first_errors.size() >= ChatReport::kMaxErrorMessages) break;
    report.first_errors.push_back(std::move(e));
  }
  return report;
}

}  // namespace troupe
