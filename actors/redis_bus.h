// RedisBus: a GroupBus (actors/bus.h) over Redis pub/sub, so that a group's
// Broadcast reaches its members on every node of a cluster (the pattern of
// Socket.IO's Redis adapter and Phoenix PubSub: the broker is Redis, the
// members stay where they are).
//
//   absl::StatusOr<Address> redis = ParseRedisUrl("redis://127.0.0.1:6379");
//   RedisBusOptions bus_options;
//   bus_options.redis = *redis;
//   auto bus = RedisBus::Create(bus_options);     // no I/O yet
//   AttachBus(*server, **bus);                    // starts the bus
//   server->Start();
//   ...
//   server->Stop();
//   (*bus)->Stop();                               // before the server is destroyed
//
// How it works. The bus runs on a Reactor of its own (the one event loop of
// core, like the metrics endpoint), never on a server's reactor, with two
// outbound connections to Redis (Reactor::Connect): a subscriber that sends
// `PSUBSCRIBE <prefix>*` once open, and a publisher that pipelines
// `PUBLISH <prefix><group> "<node-id> <text>"`. hiredis does the protocol
// (its RESP reader and command formatter); troupe's own Connection does the
// I/O, so buffers, watermarks and timeouts are those of every connection.
//
//   reactor ── Broadcast ──► Publish ──TryPost──► bus loop ──PUBLISH──► Redis
//   Redis ──pmessage──► bus loop ── Deliver ──TryPost──► every reactor's members
//
// What each node sees:
//   - its own broadcasts come back from Redis (it is subscribed too) and are
//     skipped by node id, so no member gets a line twice;
//   - while Redis is away, local delivery goes on (it never waits for the
//     bus); each link reconnects on its own with a backoff that doubles from
//     `min_backoff` to `max_backoff`; what could not be published then is
//     counted (publish_dropped), as is what was sent but never acknowledged
//     when the link broke (publish_unconfirmed). Redis pub/sub keeps nothing
//     for a subscriber that is away: what other nodes published meanwhile is
//     not delivered here, and Redis's PUBLISH reply tells the publisher how
//     many subscribers got it (publish_receivers_total).
//   - a Redis that stops answering but keeps its sockets open (stopped,
//     wedged) is found by a PING per link every `ping_interval`: one left
//     unanswered for `ping_timeout` cuts the link, which reconnects;
//   - a publish backlog (PUBLISH sent, reply not yet back) above
//     `max_unacknowledged` sheds further broadcasts (counted), so a slow
//     Redis cannot grow a node's memory without bound.
//
// Thread safety: Publish and Stats/RenderPrometheus from any thread; Start
// and Stop from one controlling thread. The deliver callback runs on the
// bus's own thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "actors/bus.h"
#include "core/net/address.h"

namespace troupe {

class Reactor;

// "redis://HOST:PORT" (PORT defaults to 6379; IPv6 hosts in brackets).
// Authentication, database numbers and TLS are not supported and are
// rejected with a message rather than ignored.
absl::StatusOr<Address> ParseRedisUrl(std::string_view url);

struct RedisBusOptions {
  Address redis;
  // Channels are <prefix><group>; nodes sharing a Redis but not a prefix
  // do not hear each other.
  std::string channel_prefix = "troupe:";
  // This node's name on the bus; empty: random (64 bits, hex). Nodes must
  // differ: a message carrying this id is taken as our own and skipped.
  std::string node_id;
  // Per attempt; then the backoff.
  absl::Duration connect_timeout = absl::Seconds(2);
  // 100 ms first, doubling to 5 s: quick after a blip, gentle on a Redis
  // that is down for long.
  absl::Duration min_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // Liveness: each open link is sent a PING every `ping_interval`; one
  // unanswered for `ping_timeout` cuts the link (counted as a ping timeout),
  // which then reconnects. A stopped or wedged Redis keeps its TCP
  // connections open, so without this the bus would wait for TCP's own
  // timeouts (hours). Zero or infinite interval: no pings.
  absl::Duration ping_interval = absl::Seconds(1);
  absl::Duration ping_timeout = absl::Seconds(3);
  // PUBLISHes sent and not yet acknowledged beyond this are shed (counted).
  // 65,536 lines of chat are a few MiB; a healthy Redis acknowledges in
  // microseconds, so only a stalled one gets near.
  size_t max_unacknowledged = 65536;
};

// What the bus has done, since Create. Each is a counter (never decreases)
// except the two flags.
struct RedisBusStats {
  bool subscribed = false;           // PSUBSCRIBE acknowledged on the live link
  bool publisher_up = false;         // the publish link is open
  uint64_t connects = 0;             // links opened (both kinds)
  uint64_t connect_failures = 0;     // attempts that failed or timed out
  uint64_t disconnects = 0;          // open links that broke
  uint64_t ping_timeouts = 0;        // links cut because a PING went unanswered
  uint64_t published = 0;            // PUBLISHes acknowledged by Redis
  uint64_t publish_receivers = 0;    // sum of their replies (subscribers reached)
  uint64_t publish_dropped = 0;      // not sent: link down, backlog or bus inbox full
  uint64_t publish_unconfirmed = 0;  // sent, then the link broke before the reply
  uint64_t publish_errors = 0;       // Redis answered an error
  uint64_t received = 0;             // messages from other nodes
  uint64_t own_skipped = 0;          // our own, come back from Redis
  uint64_t delivered = 0;            // handed to every reactor
  uint64_t deliver_refused = 0;      // some reactor's inbox was full
  uint64_t malformed = 0;            // replies or messages we could not read
};

class RedisBus final : public GroupBus {
 public:
  // Checks the options and creates the bus's loop; connects only at Start.
  static absl::StatusOr<std::unique_ptr<RedisBus>> Create(const RedisBusOptions& options);
  ~RedisBus() override;

  void Start(Deliver deliver) override;
  void Stop() override;
  void Publish(std::string_view group, std::string_view text) override;
  std::string RenderPrometheus() const override;

  // Any thread.
  RedisBusStats Stats() const;
  const std::string& node_id() const;

  struct State;  // redis_bus.cc: what the loop thread owns, and the counters

 private:
  explicit RedisBus(std::unique_ptr<Reactor> loop, std::shared_ptr<State> state);

  std::shared_ptr<State> state_;  // outlives the loop, whose tasks point into it
  std::unique_ptr<Reactor> loop_;
  std::thread thread_;
  bool started_ = false;
};

}  // namespace troupe
