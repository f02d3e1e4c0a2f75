// Core-only connection handlers for tests of the core layer (server,
// reactor, metrics), which must not depend on actors/ (docs/testing.md).
//
//   auto server = Server::Create(options, testing::EchoHandlerFactory());
//
// Thread safety: loop-affine, like every ConnectionHandler.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/loop/connection.h"
#include "core/loop/reactor.h"

namespace troupe::testing {

// Writes back every byte it reads, as it arrives: what EchoActor with the
// raw codec does, without the actor layer.
class EchoHandler final : public ConnectionHandler {
 public:
  size_t OnData(Connection& conn, std::string_view data) override {
    conn.Send(data);
    return data.size();
  }
};

inline HandlerFactory EchoHandlerFactory() {
  return [](Connection&) { return std::make_unique<EchoHandler>(); };
}

// Tells the peer, on open, which reactor owns its connection ("0", "1", ...),
// then ignores what it reads.
class WhereHandler final : public ConnectionHandler {
 public:
  void OnOpen(Connection& conn) override { conn.Send(std::to_string(conn.id().reactor)); }
  size_t OnData(Connection&, std::string_view data) override { return data.size(); }
};

}  // namespace troupe::testing
