// Stop signals for programs built on troupe: block SIGINT and SIGTERM before
// any thread starts (threads inherit the mask, so no reactor is ever
// interrupted by them), then wait for one on the main thread.
//
//   troupe::BlockStopSignals();          // first thing in main
//   server->Start();
//   int sig = troupe::WaitForStopSignal();   // SIGINT or SIGTERM
//   server->Stop();
//
// Also ignores SIGPIPE: a peer that vanished must cost one connection, not
// the process (sends use MSG_NOSIGNAL anyway).
//
// Thread safety: call from main, BlockStopSignals before starting threads.
#pragma once

#include <functional>
#include <string_view>

#include "absl/time/time.h"
#include "core/loop/reactor.h"

namespace troupe {

struct ServerOptions;
class Server;

void BlockStopSignals();
// What the waits below return for a RequestStop() (no signal number is < 0).
inline constexpr int kStopRequested = -1;
// Blocks until SIGINT or SIGTERM arrives, or RequestStop(); returns which.
int WaitForStopSignal();
// Like WaitForStopSignal, but gives up after `timeout_ms`; returns 0 then.
int WaitForStopSignalFor(int timeout_ms);
// Any thread: the program's own request to stop, as if a stop signal came,
// e.g. once another process took the listening socket over
// (core/ops/handoff.h). It is a SIGTERM queued to this process with a marker
// (sigqueue), so it wakes the same wait; the wait returns kStopRequested,
// and a real `kill -TERM` is still told apart.
void RequestStop();

// The one way a troupe program stops (docs/architecture.md, "Closing"):
// waits for SIGINT or SIGTERM, then drains `server` (Server::Stop, bounded
// by its drain_timeout); a second external SIGINT/SIGTERM cuts it short
// (Server::Abort). RequestStop() never cuts a drain (it is idempotent), and
// a drain that RequestStop began takes two external signals to cut. Returns
// the first signal (kStopRequested for RequestStop()).
struct StopSignalHooks {
  // Called every `tick_interval` while waiting for the first signal (a
  // stats line, say); zero or infinite: never.
  absl::Duration tick_interval = absl::ZeroDuration();
  std::function<void()> on_tick;
  // Called with the first signal (kStopRequested for RequestStop()), before
  // the drain starts.
  std::function<void(int sig)> on_signal;
  // Called when a second external signal cuts the drain.
  std::function<void()> on_abort;
};
int DrainOnStopSignal(Server& server, const StopSignalHooks& hooks = {});

// The whole life of a small server program, for main(): blocks the stop
// signals, creates the server, runs `before_start` on it (to spawn service
// actors, actors/service.h), starts it, prints "<name> listening on
// <address>" on stdout, then DrainOnStopSignal, and returns the
// exit status (0, or 1 after printing "<name>: <what failed>" on stderr).
//
//   int main() { return troupe::ServeUntilStopSignal("my-server", options, factory); }
int ServeUntilStopSignal(std::string_view name, const ServerOptions& options,
                         HandlerFactory factory,
                         const std::function<void(Server&)>& before_start = {});

}  // namespace troupe
