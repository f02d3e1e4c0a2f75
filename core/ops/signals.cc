#include "core/ops/signals.h"

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <string>

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
}  // namespace

void BlockStopSignals() {
  const sigset_t set = StopSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int WaitForStopSignal() {
  const sigset_t set = StopSet();
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

int WaitForStopSignalFor(int timeout_ms) {
  const sigset_t set = StopSet();
  timespec timeout{timeout_ms / 1000, static_cast<long>(timeout_ms % 1000) * 1'000'000};
  const int sig = sigtimedwait(&set, nullptr, &timeout);
  return sig > 0 ? sig : 0;
}

int ServeUntilStopSignal(std::string_view name, const ServerOptions& options,
                         HandlerFactory factory) {
  const std::string program(name);
  BlockStopSignals();
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(options, std::move(factory));
  if (!server.ok()) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), std::string(server.status().message()).c_str());
    return 1;
  }
  (*server)->Start();
  std::printf("%s listening on %s\n", program.c_str(), (*server)->address().ToString().c_str());
  std::fflush(stdout);
  WaitForStopSignal();
  (*server)->Stop();
  return 0;
}

}  // namespace troupe
