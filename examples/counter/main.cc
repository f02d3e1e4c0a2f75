// counter-server: each connection counts its lines and answers "<n> <line>".
// Usage: counter-server [port]   (0 or none: a free port, printed at start)
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "actors/actor.h"
#include "core/ops/signals.h"
#include "core/server.h"

class CounterActor final : public troupe::Actor {
 public:
  void OnMessage(troupe::Context& ctx, troupe::Bytes line) override {
    reply_ = std::to_string(++count_);
    reply_.append(" ").append(line);
    ctx.WriteFrame(reply_);  // the lines codec adds the "\n"
  }

 private:
  uint64_t count_ = 0;  // no lock: an actor runs on one reactor thread
  std::string reply_;
};

int main(int argc, char* argv[]) {
  troupe::ServerOptions options;
  const int port = argc > 1 ? std::atoi(argv[1]) : 0;
  options.address = troupe::Address::FromHostPort("127.0.0.1", static_cast<uint16_t>(port)).value();
  troupe::ActorOptions actors;
  actors.codec.kind = troupe::CodecKind::kLines;
  return troupe::ServeUntilStopSignal(
      "counter-server", options,
      troupe::ActorFactory([] { return std::make_unique<CounterActor>(); }, actors));
}
