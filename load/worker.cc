#include "load/worker.h"

#include <sys/prctl.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <limits>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/base/check.h"

namespace troupe::load {
namespace {

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
// Open loop: the worker threads' timer slack (prctl PR_SET_TIMERSLACK). The
// default 50 us would let sends run late by that much, all of it charged to
// the server as latency.
constexpr unsigned long kRateTimerSlackNs = 1000;
// Open loop: scheduled messages taken per loop turn at most. A rate the
// thread cannot keep up with must not keep it issuing past the end of the
// run, nor starve its echoes: it falls behind instead, turn by turn, and the
// send lag says so (load/client_cpu.h). At a million messages a second this
// is 4 ms of schedule, far more than a turn that keeps up takes.
constexpr uint64_t kMaxIssuesPerTurn = 4096;

}  // namespace

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(const LoadOptions& options,
                                                       const Stream& stream,
                                                       const std::vector<Address>& sources,
                                                       int first_index, int count,
                                                       const TlsClient* tls) {
  Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) return absl::ErrnoToStatus(errno, "epoll_create1");
  return std::unique_ptr<Worker>(
      new Worker(options, stream, sources, std::move(epoll), first_index, count, tls));
}

Worker::Worker(const LoadOptions& options, const Stream& stream,
               const std::vector<Address>& sources, Fd epoll, int first_index, int count,
               const TlsClient* tls)
    : options_(options),
      sources_(sources),
      epoll_(std::move(epoll)),
      sessions_(options.churn ? 0 : static_cast<size_t>(count)),
      issue_times_(sessions_.size() * static_cast<size_t>(options.pipeline)),
      // This thread's share of the rate, spread over its connections.
      open_loop_(options.rate > 0 && !stream.script_mode() && count > 0
                     ? OpenLoopSchedule(options.rate * count / options.connections,
                                        static_cast<size_t>(count))
                     : OpenLoopSchedule()),
      context_{.stream = stream,
               .pipeline = static_cast<uint64_t>(options.pipeline),
               .open_loop = open_loop_,
               .tally = tally_,
               .reconnect = options.reconnect,
               .connect_timeout_ns = absl::ToInt64Nanoseconds(options.connect_timeout),
               .tls = tls} {
  if (options.churn) {
    churn_ = std::make_unique<ChurnLoop>(options, stream, sources, epoll_.get(), first_index, count,
                                         tally_);
  }
  const size_t pipeline = static_cast<size_t>(options.pipeline);
  for (size_t i = 0; i < sessions_.size(); ++i) {
    const int index = first_index + static_cast<int>(i);
    sessions_[i].Init(index, stream.SeedFor(static_cast<uint64_t>(index)), i,
                      &issue_times_[i * pipeline]);
  }
  if (open_loop_.active()) {
    send_times_.resize(issue_times_.size());
    for (size_t i = 0; i < sessions_.size(); ++i) {
      sessions_[i].set_send_times(&send_times_[i * pipeline]);
    }
  }
  // Infinite means never. Any other huge value saturates at INT64_MAX
  // nanoseconds: the checks compare elapsed times against it, and the one
  // sum (the drain's deadline) saturates too.
  if (options.stall_timeout > absl::ZeroDuration() &&
      options.stall_timeout != absl::InfiniteDuration()) {
    stall_ns_ = absl::ToInt64Nanoseconds(options.stall_timeout);
  }
}

template <typename Handler>
void Worker::PollOnce(int64_t deadline_ns, Handler handle) {
  const int n = WaitForEvents(epoll_.get(), events_, kMaxEvents, deadline_ns);
  if (n < 0) {
    TROUPE_CHECK(errno == EINTR, "epoll_wait failed on a valid epoll fd");
    return;
  }
  for (int i = 0; i < n; ++i) {
    handle(sessions_[events_[i].data.u64], events_[i].events);
  }
}

const Address* Worker::SourceFor(const Session& s) const {
  // Round robin over the sources by connection number.
  return sources_.empty() ? nullptr : &sources_[static_cast<size_t>(s.index()) % sources_.size()];
}

void Worker::Connect(int64_t deadline_ns, int window) {
  int pending = 0;
  size_t next = 0;
  auto start_more = [&] {
    while (pending < window && next < sessions_.size()) {
      Session& s = sessions_[next++];
      if (s.StartConnect(context_, options_.target, SourceFor(s), epoll_.get())) {
        ++pending;
      }
    }
  };
  start_more();
  while (pending > 0 && MonotonicNanos() < deadline_ns) {
    PollOnce(deadline_ns, [&](Session& s, uint32_t events) {
      if (s.state() != SessionState::kConnecting) return;
      if (s.FinishConnect(context_, options_.target, events)) --pending;
    });
    start_more();
  }
  const std::string timed_out =
      absl::StrCat("connect ", options_.target.ToString(), ": timed out after ",
                   absl::FormatDuration(options_.connect_timeout));
  for (size_t i = 0; i < sessions_.size(); ++i) {
    Session& s = sessions_[i];
    if (s.state() == SessionState::kConnecting) {
      s.FailConnect(context_, timed_out);
    } else if (i >= next) {
      s.FailConnect(context_, absl::StrCat(timed_out, " (not attempted)"));
    }
  }
}

void Worker::Run(const PhaseTimes& times) {
  if (churn_ != nullptr) {
    churn_->Run(times, cpu_);
    return;
  }
  context_.measure_start_ns = times.measure_start_ns;
  open_loop_.Start(times.start_ns);
  if (open_loop_.active()) {
    // Best effort: without it, sends are merely later, and measured so.
    (void)::prctl(PR_SET_TIMERSLACK, kRateTimerSlackNs);
  } else {
    const int64_t start = MonotonicNanos();
    for (Session& s : sessions_) {
      if (s.state() != SessionState::kOpen) continue;
      s.Issue(context_, start);
      s.Flush(context_);
    }
  }
  const int64_t stall_check_interval =
      std::max(stall_ns_ / kStallChecksPerTimeout, kMinStallCheckIntervalNs);
  int64_t next_stall_check = times.start_ns + stall_check_interval;
  // Sessions waiting to reconnect keep the run going too: they are part of
  // the load, only between two connections.
  const auto active = [&] { return context_.open > 0 || !context_.reconnecting.empty(); };
  while (active() && MonotonicNanos() < times.end_ns) {
    int64_t wake = times.end_ns;
    // The CPU of the measured window, from the first turn in it; the loop
    // wakes for its start.
    if (!cpu_.started()) {
      const int64_t now = MonotonicNanos();
      if (now >= times.measure_start_ns) {
        cpu_.Start(now);
      } else {
        wake = std::min(wake, times.measure_start_ns);
      }
    }
    if (stall_ns_ > 0) {
      const int64_t now = MonotonicNanos();
      if (now >= next_stall_check) {
        CheckStalls(now);
        next_stall_check = now + stall_check_interval;
      }
      wake = std::min(wake, next_stall_check);
    }
    if (!context_.reconnecting.empty()) {
      wake = std::min(wake, ServiceReconnects(MonotonicNanos()));
    }
    // Every session closed for good: nothing will happen before the end.
    if (!active()) break;
    if (open_loop_.active()) {
      IssueDue(MonotonicNanos());
      wake = std::min(wake, open_loop_.SeqTime(next_seq_));
    }
    PollOnce(wake, [this](Session& s, uint32_t events) { Dispatch(s, events); });
  }
  const int64_t loop_end = MonotonicNanos();
  cpu_.Stop(loop_end);
  tally_.EndLoop(loop_end);

  context_.draining = true;
  if (context_.stream.script_mode()) {
    // Whoever is still open has not had all its messages echoed in time.
    for (Session& s : sessions_) {
      if (s.state() == SessionState::kOpen) s.TimeOut(context_);
    }
    CloseAll();
  }
  Drain();
  tally_.Finish();
}

void Worker::Drain() {
  // Issue nothing more; close each session once all it sent has come back,
  // so that close() sends a FIN rather than a reset.
  for (Session& s : sessions_) {
    if (s.state() == SessionState::kOpen && s.AllEchoed()) s.Close(context_);
  }
  const int64_t drain_start = MonotonicNanos();
  const int64_t drain_ns = std::max(absl::ToInt64Nanoseconds(kDrainTimeout), stall_ns_);
  const int64_t drain_deadline =
      drain_start + std::min(drain_ns, std::numeric_limits<int64_t>::max() - drain_start);
  // A connection still down gets its next attempt now rather than after a
  // backoff of up to a second, then backs off as before; the ones that
  // connect in time are closed at once (they owe nothing).
  for (const size_t local : context_.reconnecting) {
    sessions_[local].ReconnectNow(drain_start);
  }
  for (;;) {
    const int64_t now = MonotonicNanos();
    if (now >= drain_deadline) break;
    int64_t wake = drain_deadline;
    if (!context_.reconnecting.empty()) wake = std::min(wake, ServiceReconnects(now));
    if (context_.open == 0 && context_.reconnecting.empty()) break;
    PollOnce(wake, [this](Session& s, uint32_t events) { Dispatch(s, events); });
  }
  // Whoever is still open owes echoes that did not come back in time: a
  // server that dropped bytes, or stopped, near the end of the run.
  for (Session& s : sessions_) {
    if (s.state() == SessionState::kOpen) s.Incomplete(context_, "");
  }
  // Whoever is still waiting to reconnect could not be opened again: the
  // server, or the load balancer in front of it, is down.
  for (const size_t local : context_.reconnecting) {
    Session& s = sessions_[local];
    s.Unlist();
    if (s.Reconnecting()) s.GiveUpReconnecting(context_, /*down=*/true);
  }
  context_.reconnecting.clear();
}

void Worker::CloseAll() {
  // No session is in kBackoff here: an aborted run never had traffic, and
  // script mode does not reconnect.
  for (Session& s : sessions_) {
    if (s.state() == SessionState::kOpen || s.state() == SessionState::kConnecting) {
      s.Close(context_);
    }
  }
}

void Worker::Dispatch(Session& s, uint32_t events) {
  const int64_t now = MonotonicNanos();
  // After the connect phase a handshake under way is a reconnect's.
  if (s.state() == SessionState::kConnecting) {
    s.FinishReconnect(context_, options_.target, events, now);
  } else {
    s.HandleEvent(context_, events, now);
  }
}

int64_t Worker::ServiceReconnects(int64_t now) {
  int64_t next = std::numeric_limits<int64_t>::max();
  std::vector<size_t>& listed = context_.reconnecting;
  size_t kept = 0;
  // Nothing below adds to the list: a session adds itself only when a
  // stream ends, and none is open here.
  for (size_t i = 0; i < listed.size(); ++i) {
    Session& s = sessions_[listed[i]];
    if (s.state() == SessionState::kBackoff && now >= s.reconnect_at()) {
      s.StartReconnect(context_, options_.target, SourceFor(s), epoll_.get(), now);
    } else if (s.state() == SessionState::kConnecting && now >= s.reconnect_at()) {
      s.FailReconnect(context_,
                      absl::StrCat("connect ", options_.target.ToString(), ": timed out after ",
                                   absl::FormatDuration(options_.connect_timeout)),
                      now);
    }
    if (!s.Reconnecting()) {
      s.Unlist();
      continue;
    }
    listed[kept++] = listed[i];
    next = std::min(next, s.reconnect_at());
  }
  listed.resize(kept);
  return next;
}

void Worker::IssueDue(int64_t now) {
  const uint64_t due = std::min(open_loop_.SeqsDueBy(now), next_seq_ + kMaxIssuesPerTurn);
  const uint64_t n = sessions_.size();
  // A message whose window is full is not lost: the session issues it (with
  // its due time) once an echo makes room. Its send lag is counted here all
  // the same: how late the loop got to it is the client's, the window the
  // server's. The clock is read again after each send, whose syscall is
  // what makes a long turn long.
  int64_t at = now;
  for (; next_seq_ < due; ++next_seq_) {
    const int64_t due_at = open_loop_.SeqTime(next_seq_);
    if (due_at >= context_.measure_start_ns) {
      send_lag_ns_.Record(static_cast<uint64_t>(std::max<int64_t>(at - due_at, 0)));
    }
    Session& s = sessions_[next_seq_ % n];
    if (s.state() != SessionState::kOpen) continue;
    if (s.Issue(context_, now)) {
      s.Flush(context_);
      at = MonotonicNanos();
    }
  }
}

void Worker::CheckStalls(int64_t now) {
  for (Session& s : sessions_) {
    s.CheckStall(context_, now, stall_ns_, options_.stall_timeout);
  }
}

}  // namespace troupe::load
