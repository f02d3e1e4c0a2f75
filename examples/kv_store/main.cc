// kv-store: a line-protocol key-value store sharded across reactors.
//   set KEY VALUE   -> "ok"
//   get KEY         -> "KEY=VALUE" (empty value if unset)
// Each key lives on one reactor (chosen by its hash), in that reactor's own
// Store; Context::AtShard runs the request there and brings the answer back
// to the asking actor. No lock anywhere.
// Replies keep request order: answers from different reactors come back in
// any order, so each carries its request's number and waits until those
// before it have been written. Each outstanding request is pending work, so
// the server's drain waits for its answer.
// Usage: kv-store [port]   (0 or none: a free port, printed at start)
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "actors/actor.h"
#include "core/ops/signals.h"
#include "core/server.h"

struct Store {  // one per reactor, touched only by that reactor
  std::unordered_map<std::string, std::string> values;
};

class KvActor final : public troupe::Actor {
 public:
  void OnMessage(troupe::Context& ctx, troupe::Bytes line) override {
    const bool is_set = line.substr(0, 4) == "set ";
    const uint64_t seq = next_request_++;
    if (!is_set && line.substr(0, 4) != "get ") {
      Answer(ctx, seq, "error: expected 'set KEY VALUE' or 'get KEY'");
      return;
    }
    std::string rest(line.substr(4));
    const size_t space = rest.find(' ');
    std::string key = is_set ? rest.substr(0, space) : rest;
    std::string value = is_set && space != std::string::npos ? rest.substr(space + 1) : "";

    // The key lives on one reactor (its shard); the answer comes back to
    // this actor, counted as owed work so the drain waits for it.
    const auto shard = static_cast<uint32_t>(std::hash<std::string>{}(key) % ctx.reactor_count());
    ctx.AtShard<Store>(
        shard,
        [is_set, key = std::move(key), value = std::move(value)](Store& store) mutable {
          if (is_set) {
            store.values[key] = std::move(value);
            return std::string("ok");
          }
          auto it = store.values.find(key);
          return key + "=" + (it == store.values.end() ? "" : it->second);
        },
        [this, seq](troupe::Context& c, std::string text) { Answer(c, seq, std::move(text)); });
  }

 private:
  // Writes answer `seq` once every earlier one is out.
  void Answer(troupe::Context& ctx, uint64_t seq, std::string text) {
    waiting_.emplace(seq, std::move(text));
    for (auto it = waiting_.begin(); it != waiting_.end() && it->first == next_answer_;
         it = waiting_.erase(it)) {
      ctx.WriteFrame(it->second);
      ++next_answer_;
    }
  }

  uint64_t next_request_ = 0;
  uint64_t next_answer_ = 0;
  std::map<uint64_t, std::string> waiting_;  // answers that came back early
};

int main(int argc, char* argv[]) {
  troupe::ServerOptions options;
  const int port = argc > 1 ? std::atoi(argv[1]) : 0;
  options.address = troupe::Address::FromHostPort("127.0.0.1", static_cast<uint16_t>(port)).value();
  troupe::ActorOptions actors;
  actors.codec.kind = troupe::CodecKind::kLines;
  return troupe::ServeUntilStopSignal(
      "kv-store", options,
      troupe::ActorFactory([] { return std::make_unique<KvActor>(); }, actors));
}
