// One worker thread of the load: its contiguous share of the connections
// (Sessions) and the epoll loop that drives them through the run's phases:
// connect, traffic (warmup and measure, or the script), drain. With
// LoadOptions::churn its share are a ChurnLoop's slots instead (load/churn.h),
// which connect nothing up front and run the traffic and the drain.
//
//   absl::StatusOr<std::unique_ptr<Worker>> w =
//       Worker::Create(options, stream, sources, first_index, count);
//   (*w)->Connect(deadline_ns, window);   // On the worker thread...
//   (*w)->Run(times);                     // ... once RunLoad fixed `times`.
//   WorkerResult& result = (*w)->result();
//
// Thread safety: thread-compatible; owned by one thread at a time, except
// live(), which any thread may read while it runs.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/fd.h"
#include "core/net/address.h"
#include "load/churn.h"
#include "load/client_cpu.h"
#include "load/histogram.h"
#include "load/load_client.h"
#include "load/pattern.h"
#include "load/schedule.h"
#include "load/session.h"
#include "load/tally.h"
#include "load/tls_client.h"

namespace troupe::load {

class Worker {
 public:
  // Connections first_index .. first_index + count - 1. `options`, `stream`,
  // `sources` (empty: let the kernel choose) and `tls` (null: plaintext)
  // must outlive the worker.
  static absl::StatusOr<std::unique_ptr<Worker>> Create(const LoadOptions& options,
                                                        const Stream& stream,
                                                        const std::vector<Address>& sources,
                                                        int first_index, int count,
                                                        const TlsClient* tls = nullptr);

  // Phase 1: opens every connection, at most `window` handshakes at a time,
  // waiting until `deadline_ns` at most.
  void Connect(int64_t deadline_ns, int window);
  // Phases 2-4: traffic until times.end_ns, then drains and closes.
  void Run(const PhaseTimes& times);
  // Closes whatever is still open (also used when the run is aborted).
  void CloseAll();

  WorkerResult& result() { return tally_.result(); }
  const LiveStats& live() const { return tally_.live(); }  // Any thread.
  // Once Run has returned: the thread's busy fraction over the measured
  // window (load/client_cpu.h; -1 when not measured: the loop ended before
  // the window opened), and in the open loop how late it issued each
  // message due in that window.
  double busy() const { return cpu_.started() ? cpu_.busy() : -1; }
  const LatencyHistogram& send_lag() const { return send_lag_ns_; }

 private:
  // Events taken per epoll_wait; more only lengthens one loop turn.
  static constexpr int kMaxEvents = 1024;

  Worker(const LoadOptions& options, const Stream& stream, const std::vector<Address>& sources,
         Fd epoll, int first_index, int count, const TlsClient* tls);

  // Waits for events until `deadline_ns` and hands each to `handle`.
  template <typename Handler>
  void PollOnce(int64_t deadline_ns, Handler handle);
  // Phases 2-4: hands an event to its session, whether open or (with
  // LoadOptions::reconnect) connecting again.
  void Dispatch(Session& s, uint32_t events);
  // The source address of a session's connects: round robin by connection
  // number, the same one each time; null: let the kernel choose.
  const Address* SourceFor(const Session& s) const;
  // LoadOptions::reconnect: starts the reconnects whose backoff is over,
  // gives up the handshakes past their deadline, and drops the sessions that
  // are open again (or closed) from SessionContext::reconnecting. Returns
  // when it next has something to do (INT64_MAX: nothing).
  int64_t ServiceReconnects(int64_t now);
  // Open loop: issues every message due by `now` in schedule order.
  void IssueDue(int64_t now);
  // Closes, as stalled, every session that owes echoes and has made no
  // progress for stall_ns_.
  void CheckStalls(int64_t now);
  // Phase 4: closes each session once its echoes are back, or as
  // incomplete at the drain's deadline.
  void Drain();

  const LoadOptions& options_;
  const std::vector<Address>& sources_;
  Fd epoll_;
  std::vector<Session> sessions_;     // Never resized: epoll data indexes it.
  std::vector<int64_t> issue_times_;  // sessions_.size() * pipeline entries.
  epoll_event events_[kMaxEvents];
  OpenLoopSchedule open_loop_;  // Inactive: closed loop.
  int64_t stall_ns_ = 0;        // 0: no stall check.
  uint64_t next_seq_ = 0;       // Open loop: this thread's next message on time.
  // Open loop: sessions_.size() * pipeline entries, when each message's
  // first byte was sent (Session::set_send_times); empty otherwise.
  std::vector<int64_t> send_times_;
  ThreadCpuWindow cpu_;           // The measured window's CPU.
  LatencyHistogram send_lag_ns_;  // Open loop: see send_lag().
  WorkerTally tally_;
  SessionContext context_;  // Refers to the members above.
  // LoadOptions::churn: runs the traffic instead of sessions_ (then empty).
  std::unique_ptr<ChurnLoop> churn_;
};

}  // namespace troupe::load
