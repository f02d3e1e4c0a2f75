#include "core/ops/signals.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>

#include "core/server.h"

namespace troupe {
namespace {
sigset_t StopSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// RequestStop's SIGTERM carries this, from this process's own pid.
constexpr int kRequestMarker = 0x7472;  // "tr"

int Classify(int sig, const siginfo_t& info) {
  const bool ours = info.si_code == SI_QUEUE && info.si_pid == ::getpid() &&
                    info.si_value.sival_int == kRequestMarker;
  return ours ? kStopRequested : sig;
}
}  // namespace

void BlockStopSignals() {
  const sigset_t set = StopSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int WaitForStopSignal() {
  const sigset_t set = StopSet();
  siginfo_t info;
  int sig;
  while ((sig = sigwaitinfo(&set, &info)) < 0) {
  }
  return Classify(sig, info);
}

int WaitForStopSignalFor(int timeout_ms) {
  const sigset_t set = StopSet();
  timespec timeout{timeout_ms / 1000, static_cast<long>(timeout_ms % 1000) * 1'000'000};
  siginfo_t info;
  const int sig = sigtimedwait(&set, &info, &timeout);
  return sig > 0 ? Classify(sig, info) : 0;
}

void RequestStop() {
  sigval value{};
  value.sival_int = kRequestMarker;
  ::sigqueue(::getpid(), SIGTERM, value);
}

int ServeUntilStopSignal(std::string_view name, const ServerOptions& options,
                         HandlerFactory factory, const std::function<void(Server&)>& before_start) {
  const std::string program(name);
  BlockStopSignals();
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(options, std::move(factory));
  if (!server.ok()) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(),
                 std::string(server.status().message()).c_str());
    return 1;
  }
  if (before_start) before_start(**server);
  (*server)->Start();
  std::printf("%s listening on %s\n", program.c_str(), (*server)->address().ToString().c_str());
  std::fflush(stdout);
  DrainOnStopSignal(**server);
  return 0;
}

int DrainOnStopSignal(Server& server, const StopSignalHooks& hooks) {
  int sig = 0;
  const bool ticking = hooks.on_tick != nullptr && hooks.tick_interval > absl::ZeroDuration() &&
                       hooks.tick_interval != absl::InfiniteDuration();
  absl::Time next_tick = absl::Now() + (ticking ? hooks.tick_interval : absl::ZeroDuration());
  while (sig == 0) {
    if (!ticking) {
      sig = WaitForStopSignal();
      break;
    }
    const int64_t wait_ms =
        std::max<int64_t>(1, absl::ToInt64Milliseconds(next_tick - absl::Now()));
    sig = WaitForStopSignalFor(static_cast<int>(std::min<int64_t>(wait_ms, 60'000)));
    if (sig == 0 && absl::Now() >= next_tick) {
      hooks.on_tick();
      next_tick = absl::Now() + hooks.tick_interval;
    }
  }
  if (hooks.on_signal) hooks.on_signal(sig);
  // Stop() joins the reactors, so it runs on a thread of its own while this
  // one keeps listening for the signal that cuts the drain.
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    server.Stop();
    stopped.store(true);
  });
  // Only a second SIGINT/SIGTERM from outside cuts the drain. RequestStop()
  // asks for the drain that is already under way (a takeover completing
  // just after an operator's SIGTERM): ignored. And when the drain began
  // with RequestStop, one external signal (a deploy script's SIGTERM to the
  // old process) is a first request too, answered by the drain already
  // running: it takes a second one to cut.
  int external = sig == kStopRequested ? 0 : 1;
  while (!stopped.load()) {
    const int next = WaitForStopSignalFor(100);
    if (next == 0 || next == kStopRequested) continue;
    if (++external < 2) continue;
    if (hooks.on_abort) hooks.on_abort();
    server.Abort();
    break;
  }
  stopper.join();
  return sig;
}

}  // namespace troupe
