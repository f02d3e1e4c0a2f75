#include "actors/bus.h"

#include <memory>
#include <string>

#include "actors/cell.h"
#include "core/base/check.h"
#include "core/server.h"

namespace troupe {

void AttachBus(Server& server, GroupBus& bus) {
  // The reactors read their BusLink without a lock: it must be set before
  // any of them runs.
  TROUPE_CHECK(!server.serving(), "AttachBus must come before Server::Start");
  for (int i = 0; i < server.workers(); ++i) {
    server.reactor(i).Local<internal::BusLink>().bus = &bus;
  }
  bus.Start([&server](std::string_view group, std::string_view text) {
    // One shared payload for every reactor, as for a local Broadcast; no
    // member is skipped (the sender is on another node).
    auto message = std::make_shared<const GroupMessage>(
        GroupMessage{std::string(group), ActorRef{}, std::string(text)});
    bool all = true;
    for (int i = 0; i < server.workers(); ++i) {
      Reactor& target = server.reactor(i);
      all &= target.TryPostFanOut(
          [&target, message] { internal::FanOutInLoop(target, message, ActorRef{}); });
    }
    return all;
  });
}

}  // namespace troupe
