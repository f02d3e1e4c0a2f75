#include "core/ops/systemd.h"

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/base/log.h"
#include "core/base/string_view_compat.h"

namespace troupe {
namespace {

void Notify(const std::string& state) {
  // unset_environment 0: later messages (STOPPING=1, pings) need it too.
  const int rc = sd_notify(0, state.c_str());
  if (rc < 0) TROUPE_LOG_EVERY_SECOND(kWarning, "sd_notify: %s", std::strerror(-rc));
}

// Unset or empty: not started by systemd as Type=notify.
bool NotifySocketSet() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  return socket != nullptr && socket[0] != '\0';
}

}  // namespace

absl::StatusOr<int> SystemdListenFd() {
  // unset_environment 1: a child we start must not think the sockets are its.
  const int n = sd_listen_fds(1);
  if (n < 0) return absl::ErrnoToStatus(-n, "sd_listen_fds (LISTEN_FDS/LISTEN_PID)");
  if (n == 0) return -1;
  if (n > 1) {
    for (int i = 0; i < n; ++i) ::close(SD_LISTEN_FDS_START + i);
    return absl::InvalidArgumentError(
        absl::StrCat("systemd passed ", n,
                     " sockets (LISTEN_FDS); expected one: give the .socket unit "
                     "one ListenStream="));
  }
  return SD_LISTEN_FDS_START;
}

SystemdNotifier::SystemdNotifier(Server& server) : server_(server), enabled_(NotifySocketSet()) {
  uint64_t usec = 0;
  // > 0 only when WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is us).
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_interval_ = absl::Microseconds(static_cast<int64_t>(usec));
  }
  stamps_ =
      std::make_shared<std::vector<std::atomic<uint64_t>>>(static_cast<size_t>(server_.workers()));
}

SystemdNotifier::~SystemdNotifier() { Stop(); }

void SystemdNotifier::Ready(std::string_view status) {
  if (!enabled_) return;
  Notify(absl::StrCat("READY=1\nSTATUS=", AsAbsl(status)));
  if (watchdog_interval_ > absl::ZeroDuration() && !watchdog_.joinable()) {
    TROUPE_LOG(kInfo, "systemd watchdog: every %s, while all %d reactors answer",
               absl::FormatDuration(watchdog_interval_ / 2), server_.workers());
    watchdog_ = std::thread([this] { RunWatchdog(); });
  }
}

void SystemdNotifier::Stopping(std::string_view status) {
  if (!enabled_) return;
  Notify(absl::StrCat("STOPPING=1\nSTATUS=", AsAbsl(status)));
}

void SystemdNotifier::Stop() {
  if (!watchdog_.joinable()) return;
  stop_.Notify();
  watchdog_.join();
}

void SystemdNotifier::RunWatchdog() {
  // Half the interval, as sd_watchdog_enabled(3) advises: one late round
  // still lands inside systemd's deadline.
  const absl::Duration period = watchdog_interval_ / 2;
  std::vector<std::atomic<uint64_t>>& stamps = *stamps_;
  uint64_t round = 0;
  auto post_round = [&] {
    ++round;
    for (int i = 0; i < server_.workers(); ++i) {
      server_.reactor(i).Post([stamps = stamps_, i, r = round] {
        (*stamps)[static_cast<size_t>(i)].store(r, std::memory_order_relaxed);
      });
    }
  };
  post_round();
  while (!stop_.WaitForNotificationWithTimeout(period)) {
    // Every reactor must have run the task posted a period ago: one that did
    // not is stuck in a turn (or far behind), and the process is not alive
    // in the sense that matters to its clients.
    bool alive = true;
    for (const std::atomic<uint64_t>& stamp : stamps) {
      alive = alive && stamp.load(std::memory_order_relaxed) >= round;
    }
    if (alive) {
      Notify("WATCHDOG=1");
      pings_.fetch_add(1, std::memory_order_relaxed);
      post_round();
    } else {
      // The round stays pending: the stuck reactor's task is still queued,
      // and its running it later is what resumes the pings.
      skipped_.fetch_add(1, std::memory_order_relaxed);
      TROUPE_LOG_EVERY_SECOND(kWarning,
                              "systemd watchdog: a reactor has not run a task for %s; "
                              "not pinging (systemd restarts us after %s)",
                              absl::FormatDuration(period),
                              absl::FormatDuration(watchdog_interval_));
    }
  }
}

}  // namespace troupe
