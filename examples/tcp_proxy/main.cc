// tcp-proxy: a TCP tunnel to one backend, on every core.
//
// Each client the server accepts gets its own connection to the backend,
// dialled by the client's actor from its own reactor (Context::Connect), so
// both halves of a tunnel live on one reactor and no byte crosses a thread.
// Bytes read on one side go to the other side's actor as mail and are
// written there.
//
// Backpressure both ways: when a side's output to its own peer passes the
// high watermark (the peer is not keeping up), it tells the other side to
// pause reading, and to resume once its output drains (OnOutputDrained). The
// fast peer then waits in TCP flow control, not in the proxy's memory: a
// tunnel holds at most about the high watermark plus one turn's reads per
// direction, whatever the peers do.
//
// Ends: a peer's FIN is relayed as a FIN (half-close: the other direction
// goes on, so a client that sends its request and shuts down writing still
// gets the whole answer); once both directions are done both sides close.
// An abnormal end of either side (a reset, a failure) aborts the other, and
// a relay mail that cannot be delivered ends the tunnel at once: nothing is
// lost or stalled silently.
//
// Usage: tcp-proxy BACKEND_HOST:PORT [LISTEN_HOST:PORT]   (listen: 127.0.0.1:0)
// Prints "tcp-proxy listening on HOST:PORT"; SIGINT/SIGTERM drain.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "actors/actor.h"
#include "core/base/log.h"
#include "core/ops/signals.h"
#include "core/server.h"

namespace {

struct Chunk {  // bytes one side read, for the other to write
  std::string bytes;
};
struct Pause {};     // "my peer is behind: stop reading yours"
struct Resume {};    // "caught up"
struct PeerDone {};  // "my peer sent FIN": relay the half-close

// One side of a tunnel: writes what the other side read, holds the other
// side back while its own peer is behind, and relays half-closes. Every
// mail to the other side must arrive: if one cannot be taken, the tunnel
// ends at once (an RST for both peers) rather than lose or stall a byte.
class Side : public troupe::Actor {
 public:
  void OnMessage(troupe::Context& ctx, troupe::Bytes bytes) override {
    Tell(ctx, troupe::Mail::Of(Chunk{std::string(bytes)}));
  }

  void OnMail(troupe::Context& ctx, troupe::Mail mail) override {
    if (Chunk* chunk = mail.As<Chunk>()) {
      ctx.Write(chunk->bytes);
      if (ctx.peer_behind() && !holding_back_) {
        holding_back_ = true;
        Tell(ctx, troupe::Mail::Of(Pause{}));
      }
    } else if (mail.Is<Pause>()) {
      ctx.PauseReading();
    } else if (mail.Is<Resume>()) {
      ctx.ResumeReading();
    } else if (mail.Is<PeerDone>()) {
      // Every chunk the other side read came before this: FIN after them.
      other_done_ = true;
      ctx.ShutdownWrite();
      if (peer_done_) ctx.CloseAfterFlush();
    } else if (const troupe::Terminated* end = mail.Get<troupe::Terminated>()) {
      // A clean end comes after both half-closes; anything else (a reset, a
      // failure) is passed on as an abort, so the peer cannot take a cut
      // stream for a complete one.
      const bool clean = end->reason == troupe::CloseReason::kPeerClosed ||
                         end->reason == troupe::CloseReason::kFlushedClose;
      if (clean && other_done_) {
        ctx.CloseAfterFlush();
      } else {
        ctx.Close();
      }
    }
  }

  void OnPeerClosed(troupe::Context& ctx) override {
    peer_done_ = true;
    Tell(ctx, troupe::Mail::Of(PeerDone{}));
    if (other_done_) ctx.CloseAfterFlush();  // both directions are done
  }

  void OnOutputDrained(troupe::Context& ctx) override {
    if (!holding_back_) return;
    holding_back_ = false;
    Tell(ctx, troupe::Mail::Of(Resume{}));
  }

 protected:
  void Tell(troupe::Context& ctx, troupe::Mail mail) {
    if (!ctx.Send(other_, std::move(mail))) ctx.Close();
  }

  troupe::ActorRef other_;

 private:
  bool holding_back_ = false;
  bool peer_done_ = false;   // my peer sent FIN
  bool other_done_ = false;  // the other side's peer did (and I relayed it)
};

// The backend half: opened by the client half, watches it.
class BackendSide final : public Side {
 public:
  explicit BackendSide(troupe::ActorRef client) { other_ = client; }
  void OnOpen(troupe::Context& ctx) override { ctx.Watch(other_); }
};

// The client half: dials the backend when its client arrives.
class ClientSide final : public Side {
 public:
  explicit ClientSide(troupe::Address backend) : backend_(std::move(backend)) {}

  void OnOpen(troupe::Context& ctx) override {
    ctx.PauseReading();  // nowhere to relay to until the backend answers
    troupe::ConnectOptions options;
    options.timeout = absl::Seconds(5);
    ctx.Connect(backend_, std::make_unique<BackendSide>(ctx.Self()), options,
                [this](troupe::Context& c, absl::StatusOr<troupe::ActorRef> backend) {
                  if (!backend.ok()) {
                    TROUPE_LOG_EVERY_SECOND(kWarning, "tcp-proxy: backend %s: %s",
                                            backend_.ToString(), backend.status().ToString());
                    c.Close();
                    return;
                  }
                  other_ = *backend;
                  c.Watch(other_);
                  c.ResumeReading();
                });
  }

 private:
  const troupe::Address backend_;
};

[[noreturn]] void Usage(const char* message) {
  std::fprintf(stderr, "tcp-proxy: %s\nusage: tcp-proxy BACKEND_HOST:PORT [LISTEN_HOST:PORT]\n",
               message);
  std::exit(2);
}

}  // namespace

int main(int argc, char* argv[]) {
  if (argc < 2 || argc > 3) Usage("expected a backend address");
  absl::StatusOr<troupe::Address> backend = troupe::Address::Parse(argv[1]);
  if (!backend.ok()) Usage("the backend is not HOST:PORT");
  troupe::ServerOptions options;
  absl::StatusOr<troupe::Address> listen =
      troupe::Address::Parse(argc > 2 ? argv[2] : "127.0.0.1:0");
  if (!listen.ok()) Usage("the listen address is not HOST:PORT");
  options.address = *listen;
  return troupe::ServeUntilStopSignal(
      "tcp-proxy", options,
      troupe::ActorFactory([backend = *backend] { return std::make_unique<ClientSide>(backend); }));
}
