// systemd glue for a troupe server (library troupe_systemd, which links
// libsystemd; programs that do not use it do not): socket activation,
// Type=notify readiness and the watchdog, through libsystemd's sd_listen_fds,
// sd_notify and sd_watchdog_enabled.
//
//   absl::StatusOr<int> passed = SystemdListenFd();   // -1: none passed
//   if (!passed.ok()) { /* "systemd passed 2 sockets; expected one" */ }
//   if (*passed >= 0) options.adopt_listen_fd = *passed;
//   ... server->Start();
//   SystemdNotifier notifier(*server);
//   notifier.Ready("serving on 127.0.0.1:7007");   // READY=1, STATUS=..., watchdog on
//   ... the first SIGTERM: notifier.Stopping();    // STOPPING=1
//   ... after the drain: notifier.Stop();
//
// Without NOTIFY_SOCKET in the environment, or with it empty (not started by
// systemd, or not Type=notify), every call is a no-op.
//
// Watchdog (WatchdogSec= in the unit, seen as WATCHDOG_USEC): a thread pings
// WATCHDOG=1 every half interval, but only while every reactor is alive: each
// round it posts a no-op task to every reactor that stamps the round it ran
// in, and it pings only if every reactor ran the previous round's task. A
// wedged reactor (an actor that blocks, a livelock) stops the pings, and
// systemd restarts the process after one interval.
//
// Thread safety: from one controlling thread (the watchdog is its own).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "core/server.h"

namespace troupe {

// The one listening socket systemd passed us (LISTEN_FDS for our LISTEN_PID;
// sd_listen_fds), or -1 when none was. The LISTEN_* variables are removed so
// that children do not see them. More than one socket: InvalidArgument
// (a troupe server listens on one).
absl::StatusOr<int> SystemdListenFd();

class SystemdNotifier {
 public:
  // `server` must outlive this object (the watchdog posts to its reactors).
  explicit SystemdNotifier(Server& server);
  ~SystemdNotifier();  // Stop()s
  SystemdNotifier(const SystemdNotifier&) = delete;
  SystemdNotifier& operator=(const SystemdNotifier&) = delete;

  // True when a notify socket was given (NOTIFY_SOCKET).
  bool enabled() const { return enabled_; }
  // The watchdog interval systemd asked for, or zero.
  absl::Duration watchdog_interval() const { return watchdog_interval_; }

  // READY=1 with STATUS=<status>; starts the watchdog thread if asked for.
  void Ready(std::string_view status);
  // STOPPING=1 with STATUS=<status>: the drain begins. The watchdog goes
  // on while the reactors drain (they still run tasks).
  void Stopping(std::string_view status);
  // Ends the watchdog thread (joins). Call before the Server stops for good.
  void Stop();

  // The pings sent so far (for tests and logs).
  uint64_t pings() const { return pings_.load(std::memory_order_relaxed); }
  // Rounds skipped because a reactor had not run the previous round's task.
  uint64_t skipped() const { return skipped_.load(std::memory_order_relaxed); }

 private:
  void RunWatchdog();

  Server& server_;
  const bool enabled_;
  absl::Duration watchdog_interval_ = absl::ZeroDuration();
  // Per reactor, the last round whose task it ran. Shared with the tasks,
  // which may run after this object is gone (a reactor still draining).
  std::shared_ptr<std::vector<std::atomic<uint64_t>>> stamps_;
  std::atomic<uint64_t> pings_{0};
  std::atomic<uint64_t> skipped_{0};
  absl::Notification stop_;
  std::thread watchdog_;
};

}  // namespace troupe
