// StartServer: a Server on a free loopback port, started, for actor tests;
// `before_start` runs between Create and Start (to spawn service actors).
//
//   auto server = StartServer(options, ActorFactory(...), [&](Server& s) { shards.Spawn(s, ...);
//   }); LineClient client(server->address());
//
// Thread safety: call from the test's thread.
#pragma once

#include <functional>
#include <memory>
#include <utility>

#include "core/server.h"
#include "gtest/gtest.h"

namespace troupe::testing {

inline std::unique_ptr<Server> StartServer(ServerOptions options, HandlerFactory factory,
                                           const std::function<void(Server&)>& before_start = {}) {
  options.address = *Address::Parse("127.0.0.1:0");
  auto server = Server::Create(options, std::move(factory));
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  if (before_start) before_start(**server);
  (*server)->Start();
  return std::move(*server);
}

}  // namespace troupe::testing
