#include "load/load_client.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
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
#include "load/pattern.h"
#include "load/progress.h"
#include "load/schedule.h"
#include "load/source_addresses.h"
#include "load/tally.h"
#include "load/worker.h"

namespace troupe {
namespace {

// Connection handshakes outstanding at once, across all threads. The
// server's accept queue (net.core.somaxconn, 4096 by default) drops SYNs
// once full, and a dropped SYN costs a 1 s retransmit; a quarter of it leaves
// room for a server that accepts slower than the loopback completes
// handshakes.
constexpr int kConnectWindow = 1024;

int OnlineCpus() {
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

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
  latency_actual_ns.Merge(other.latency_actual_ns);
  LatencyHistogram::AddCounts(latency_buckets, other.latency_buckets);
  verification_errors += other.verification_errors;
  connections_lost += other.connections_lost;
  connections_timed_out += other.connections_timed_out;
  connections_incomplete += other.connections_incomplete;
  connections_stalled += other.connections_stalled;
  reconnections += other.reconnections;
  reconnect_failures += other.reconnect_failures;
  unanswered_bytes += other.unanswered_bytes;
  abandoned_messages += other.abandoned_messages;
  connections_down += other.connections_down;
  churn_connects += other.churn_connects;
  churn_connect_failures += other.churn_connect_failures;
}

double LoadReport::MessagesPerSecond() const {
  const double s = absl::ToDoubleSeconds(measured);
  return s > 0 ? static_cast<double>(messages) / s : 0.0;
}

double LoadReport::MebibytesPerSecond() const {
  const double s = absl::ToDoubleSeconds(measured);
  return s > 0 ? static_cast<double>(bytes) / (1024.0 * 1024.0) / s : 0.0;
}

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& options) {
  if (absl::Status s = ValidateLoadOptions(options); !s.ok()) return s;
  const int n = options.connections;
  int thread_count = options.threads > 0 ? options.threads : OnlineCpus();
  thread_count = std::min(thread_count, n);
  const bool script_mode = !options.messages.empty();

  int source_count = 1;
  absl::StatusOr<std::vector<Address>> sources = load::SourceAddresses(options, &source_count);
  if (!sources.ok()) return sources.status();
  // Built once, read by every worker: the table, or the script's bytes.
  std::unique_ptr<load::Script> script;
  if (script_mode) script = std::make_unique<load::Script>(options.messages);
  const load::Stream stream = script != nullptr
                                  ? load::Stream(*script)
                                  : load::Stream(options.message_size, options.framing);

  // One client context for the run: the CA file is read once, and a bad
  // one fails the run before any connection is made.
  std::unique_ptr<load::TlsClient> tls;
  if (options.tls) {
    absl::StatusOr<std::unique_ptr<load::TlsClient>> made = load::TlsClient::Create(options);
    if (!made.ok()) return made.status();
    tls = *std::move(made);
  }

  // Contiguous slices, so connection numbers in errors map to threads simply.
  std::vector<std::unique_ptr<load::Worker>> workers;
  for (int t = 0; t < thread_count; ++t) {
    const int first = static_cast<int>(int64_t{n} * t / thread_count);
    const int last = static_cast<int>(int64_t{n} * (t + 1) / thread_count);
    absl::StatusOr<std::unique_ptr<load::Worker>> w =
        load::Worker::Create(options, stream, *sources, first, last - first, tls.get());
    if (!w.ok()) return w.status();
    workers.push_back(*std::move(w));
  }

  load::PhaseTimes times;
  // std::latch and std::mutex rather than absl::Notification/Mutex: they are
  // inline atomics and pthreads, so ThreadSanitizer sees the hand-over even
  // though the distribution's Abseil is not instrumented.
  std::mutex mu;
  std::condition_variable changed;
  int connected_threads = 0;  // Guarded by mu.
  int finished_threads = 0;   // Guarded by mu.
  std::latch go(1);
  const int64_t connect_start = load::MonotonicNanos();
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
      if (times.abort) {
        w->CloseAll();
      } else {
        w->Run(times);
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        ++finished_threads;
      }
      changed.notify_all();
    });
  }

  // This thread waits, and reports progress on the way if asked to.
  std::vector<const load::LiveStats*> lives;
  for (const auto& w : workers) lives.push_back(&w->live());
  load::ProgressReporter reporter(options, std::move(lives), connect_start);
  const bool report_progress =
      options.on_progress && options.progress_interval > absl::ZeroDuration();
  const auto interval =
      std::chrono::nanoseconds(absl::ToInt64Nanoseconds(options.progress_interval));
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
  // Churn connects nothing up front: its cycles connect as they go.
  const int64_t start = load::MonotonicNanos();
  times.abort = established == 0 && !options.churn;
  times.start_ns = start;
  if (script_mode) {
    times.measure_start_ns = start;
    times.end_ns = start + absl::ToInt64Nanoseconds(options.script_timeout);
  } else {
    times.measure_start_ns = start + absl::ToInt64Nanoseconds(options.warmup);
    times.end_ns = times.measure_start_ns + absl::ToInt64Nanoseconds(options.duration);
  }
  reporter.StartTraffic(&times);
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
  report.reconnect = options.reconnect;
  report.framing = options.framing;
  report.churn = options.churn;
  report.churn_close = options.churn_close;
  if (script) {
    report.script_messages = script->ends.size();
    report.script_bytes = script->bytes.size();
  }
  report.connections_requested = n;
  report.warmup = script_mode ? absl::ZeroDuration() : options.warmup;
  report.latency_buckets.assign(LatencyHistogram::BucketCount(), 0);
  std::string first_connect_error;
  int64_t loop_end_ns = times.measure_start_ns;
  std::vector<std::string> errors;
  for (auto& w : workers) {
    load::WorkerResult& r = w->result();
    report.Add(r.counts);
    if (first_connect_error.empty()) first_connect_error = r.first_connect_error;
    for (std::string& e : r.errors) errors.push_back(std::move(e));
    loop_end_ns = std::max(loop_end_ns, r.loop_end_ns);
  }
  {
    // The client's own load, so that a report can say when its figures may
    // be the client's limit (load/client_cpu.h).
    std::vector<double> busy;
    LatencyHistogram send_lag;
    for (const auto& w : workers) {
      busy.push_back(w->busy());
      send_lag.Merge(w->send_lag());
    }
    report.client = AssessClientLoad(std::move(busy), send_lag, report.rate > 0);
  }
  if (options.churn && report.churn_connects == 0) {
    return absl::UnavailableError(absl::StrCat(
        "no connection to ", report.target, " could be established (",
        report.churn_connect_failures,
        " churn connects tried); first error: ", errors.empty() ? "none" : errors.front()));
  }
  if (!options.churn && established == 0) {
    return absl::UnavailableError(absl::StrCat("no connection to ", report.target,
                                               " could be established (", n,
                                               " tried); first error: ", first_connect_error));
  }
  report.measured = absl::Nanoseconds(loop_end_ns - times.measure_start_ns);
  if (report.connections_failed > 0) {
    report.first_errors.push_back(
        absl::StrCat(report.connections_failed, " of ", n,
                     " connections failed to connect; first: ", first_connect_error));
  }
  // A run that measured nothing says nothing about the server, however clean
  // it looks: a server that accepts and never echoes must not pass. Script
  // mode counts its completions over the whole script, so the same rule
  // holds there.
  report.no_messages = report.messages == 0;
  if (report.no_messages) {
    report.first_errors.push_back(script_mode ? "no message of the script was echoed completely"
                                  : options.churn
                                      ? "no connection cycle completed in the measured window"
                                      : "no message completed in the measured window");
  }
  for (std::string& e : errors) {
    if (report.first_errors.size() >= LoadReport::kMaxErrorMessages) break;
    report.first_errors.push_back(std::move(e));
  }
  return report;
}

}  // namespace troupe
