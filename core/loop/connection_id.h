// ConnectionId: the name of one entry of a reactor's connection table (a
// connection, or any other actor the table holds), valid anywhere and for as
// long as anyone keeps it.
//
//   ConnectionId id = conn.id();          // on the owning reactor
//   server->SendMail(id, Mail::Of(42));   // from any thread, later
//
// A closed entry's slot gets a new generation when it is reused, so a stale
// id never reaches the newcomer: lookups compare the generation.
//
// A reactor keeps two tables: connections, and services (entries with no
// socket, core/loop/service.h). A service's slot has kServiceSlot set, so one
// id names either kind and mail is routed by the id alone.
//
// Thread safety: a value type; thread-compatible.
#pragma once

#include <cstdint>

namespace troupe {

// The slot bit of the service table's entries.
inline constexpr uint32_t kServiceSlot = 1u << 31;

struct ConnectionId {
  uint32_t reactor = 0;     // index of the owning reactor
  uint32_t slot = 0;        // index into its table (kServiceSlot: the services')
  uint32_t generation = 0;  // 0 = no connection
  bool valid() const { return generation != 0; }
  bool is_service() const { return (slot & kServiceSlot) != 0; }
  friend bool operator==(const ConnectionId&, const ConnectionId&) = default;
};

}  // namespace troupe
