// kv-store: a line-protocol key-value store sharded across reactors on
// service actors (actors/service.h).
//   set KEY VALUE   -> "ok"
//   get KEY         -> "KEY=VALUE" (empty value if unset)
//   poison KEY      -> the key's shard throws: "error: ..." (a test of the
//                      restart policy; the shard restarts empty)
// Each key lives in one StoreShard, one per reactor (troupe::Sharded),
// chosen by the key's hash. A connection's Session asks the shard
// (Context::Ask) and writes the answer; answers to pipelined requests come
// back in request order, because the replies of one actor's Asks run in ask
// order. No lock, no reactor call, and the drain waits for every answer
// owed (an Ask is pending work).
// Usage: kv-store [port]   (0 or none: a free port, printed at start)
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "actors/actor.h"
#include "actors/service.h"
#include "core/ops/signals.h"
#include "core/server.h"

namespace {

// The requests a shard answers (each with a std::string reply).
struct Set {
  std::string key;
  std::string value;
};
struct Get {
  std::string key;
};
struct Poison {};

// One shard of the store: touched only by its own reactor, like any actor.
class StoreShard final : public troupe::ServiceActor {
 public:
  void OnMail(troupe::Context& ctx, troupe::Mail mail) override {
    if (Set* set = mail.As<Set>()) {
      values_[std::move(set->key)] = std::move(set->value);
      ctx.Reply(mail.return_address(), std::string("ok"));
    } else if (const Get* get = mail.Get<Get>()) {
      auto it = values_.find(get->key);
      ctx.Reply(mail.return_address(), get->key + "=" + (it == values_.end() ? "" : it->second));
    } else if (mail.Is<Poison>()) {
      // The asker gets an Internal error; the policy restarts the shard.
      throw std::runtime_error("poison command");
    }
  }

 private:
  std::unordered_map<std::string, std::string> values_;
};

class Session final : public troupe::Actor {
 public:
  explicit Session(troupe::Sharded store) : store_(std::move(store)) {}

  void OnMessage(troupe::Context& ctx, troupe::Bytes line) override {
    const std::string_view verb = line.substr(0, line.find(' '));
    const std::string rest(line.size() > verb.size() ? line.substr(verb.size() + 1) : "");
    if (verb == "set") {
      const size_t space = rest.find(' ');
      std::string key = rest.substr(0, space);
      std::string value = space == std::string::npos ? "" : rest.substr(space + 1);
      Ask(ctx, key, Set{key, std::move(value)});
    } else if (verb == "get") {
      Ask(ctx, rest, Get{rest});
    } else if (verb == "poison") {
      Ask(ctx, rest, Poison{});
    } else {
      // No shard to ask, but it must not overtake the answers before it.
      ctx.InOrder([](troupe::Context& c) {
        c.WriteFrame("error: expected 'set KEY VALUE', 'get KEY' or 'poison KEY'");
      });
    }
  }

 private:
  template <typename Request>
  void Ask(troupe::Context& ctx, const std::string& key, Request request) {
    ctx.Ask<std::string>(
        store_.ForKey(key), std::move(request), absl::Seconds(5),
        [](troupe::Context& c, absl::StatusOr<std::string> answer) {
          c.WriteFrame(answer.ok() ? *answer : "error: " + answer.status().ToString());
        });
  }

  troupe::Sharded store_;
};

}  // namespace

int main(int argc, char* argv[]) {
  troupe::ServerOptions options;
  const int port = argc > 1 ? std::atoi(argv[1]) : 0;
  options.address = troupe::Address::FromHostPort("127.0.0.1", static_cast<uint16_t>(port)).value();
  troupe::ActorOptions actors;
  actors.codec.kind = troupe::CodecKind::kLines;
  // A shard that throws is restarted (empty) after a short backoff, at most
  // 3 times in 10 s; a fourth failure in that window stops it for good.
  troupe::ServiceActorOptions shard_options;
  shard_options.restart.max_restarts = 3;
  shard_options.restart.within = absl::Seconds(10);
  troupe::Sharded store;
  return troupe::ServeUntilStopSignal(
      "kv-store", options,
      troupe::ActorFactory([store] { return std::make_unique<Session>(store); }, actors),
      [&](troupe::Server& server) {
        store.Spawn(
            server, [](uint32_t) { return std::make_unique<StoreShard>(); }, shard_options);
      });
}
