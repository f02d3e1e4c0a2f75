#include "actors/redis_bus.h"

#include <hiredis/hiredis.h>

#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/check.h"
#include "core/base/deadline.h"
#include "core/base/log.h"
#include "core/base/string_view_compat.h"
#include "core/loop/reactor.h"

namespace troupe {
namespace {

using Counter = std::atomic<uint64_t>;

void Bump(Counter& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }
uint64_t Read(const Counter& c) { return c.load(std::memory_order_relaxed); }

std::string RandomNodeId() {
  std::random_device random;
  const uint64_t id = (static_cast<uint64_t>(random()) << 32) ^ random();
  return absl::StrFormat("%016x", id);
}

// The RESP encoding of one command, binary-safe (hiredis formats it).
std::string FormatCommand(std::initializer_list<std::string_view> args) {
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  for (std::string_view a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  char* command = nullptr;
  const int n =
      redisFormatCommandArgv(&command, static_cast<int>(argv.size()), argv.data(), lengths.data());
  TROUPE_CHECK(n > 0 && command != nullptr, "redisFormatCommandArgv failed (out of memory)");
  std::string out(command, static_cast<size_t>(n));
  redisFreeCommand(command);
  return out;
}

std::string_view ReplyString(const redisReply* r) {
  if (r == nullptr || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS &&
                       r->type != REDIS_REPLY_ERROR)) {
    return {};
  }
  return std::string_view(r->str, r->len);
}

}  // namespace

absl::StatusOr<Address> ParseRedisUrl(std::string_view url) {
  const std::string shown(url);
  auto invalid = [&shown](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("redis URL '", shown, "': ", AsAbsl(why)));
  };
  if (url.starts_with("rediss://")) return invalid("TLS is not supported");
  if (!url.starts_with("redis://")) return invalid("must look like redis://HOST:PORT");
  url.remove_prefix(8);
  if (url.find('@') != std::string_view::npos) return invalid("authentication is not supported");
  if (url.ends_with('/')) url.remove_suffix(1);  // redis://host:port/ is the same URL
  if (url.find('/') != std::string_view::npos) {
    return invalid("database numbers are not supported (pub/sub ignores them)");
  }
  if (url.empty()) return invalid("no host");
  // host, host:port, [v6], [v6]:port
  std::string_view host = url;
  std::string_view port_text;
  if (host.front() == '[') {
    const size_t close = host.find(']');
    if (close == std::string_view::npos) return invalid("unclosed [");
    const std::string_view after = host.substr(close + 1);
    host = host.substr(1, close - 1);
    if (!after.empty()) {
      if (after.front() != ':') return invalid("junk after ]");
      port_text = after.substr(1);
    }
  } else if (const size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    port_text = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  uint32_t port = 6379;
  if (port_text.data() != nullptr &&
      (!absl::SimpleAtoi(AsAbsl(port_text), &port) || port == 0 || port > 65535)) {
    return invalid("port must be 1..65535");
  }
  if (host.empty()) return invalid("no host");
  return Address::FromHostPort(host, static_cast<uint16_t>(port));
}

// What the loop thread owns (the links) and what any thread reads (the
// counters). Shared by the bus and the tasks and handlers on its loop.
struct RedisBus::State {
  // One connection to Redis: the subscriber or the publisher.
  struct Link {
    const char* name;
    bool subscriber;
    Connection* conn = nullptr;  // while open (valid until OnClose returns)
    absl::Duration backoff;
    uint64_t unacknowledged = 0;    // publisher: PUBLISHes awaiting their reply
    bool ping_outstanding = false;  // a PING sent, its PONG not back yet
    absl::Time ping_sent;
  };

  RedisBusOptions options;
  Reactor* loop = nullptr;
  Deliver deliver;
  std::atomic<bool> stopping{false};
  std::atomic<bool> stopped{false};  // the loop has ended: it runs nothing more
  std::atomic<bool> subscribed{false};
  std::atomic<bool> publisher_up{false};

  Counter connects{0}, connect_failures{0}, disconnects{0}, ping_timeouts{0}, published{0},
      publish_receivers{0}, publish_dropped{0}, publish_unconfirmed{0}, publish_errors{0},
      received{0}, own_skipped{0}, delivered{0}, deliver_refused{0}, malformed{0};
  // Publish tasks posted to the loop, and those it ran: once the loop has
  // stopped, the difference died in its inbox and counts as dropped.
  Counter posted{0}, taken{0};

  // Loop thread only.
  Link sub{"subscriber", true, nullptr, {}, 0, false, {}};
  Link pub{"publisher", false, nullptr, {}, 0, false, {}};

  void ConnectInLoop(Link& link);
  void RetryLaterInLoop(Link& link);
  void OpenedInLoop(Link& link, Connection& conn);
  void ClosedInLoop(Link& link, CloseReason reason);
  void ReplyInLoop(Link& link, const redisReply& reply);
  void SendPingInLoop(Link& link);
  // Every ping_interval: a link whose PING went unanswered for ping_timeout
  // is cut (Redis is stopped or the path is dead: TCP alone would take
  // hours to say so), the others are pinged again.
  void PingTickInLoop();
  void PublishInLoop(std::string command);
};

namespace {

// Speaks RESP on one link: feeds what arrives to hiredis's reader and hands
// each complete reply to the bus state.
class RespHandler final : public ConnectionHandler {
 public:
  RespHandler(RedisBus::State& state, RedisBus::State::Link& link)
      : state_(state), link_(link), reader_(redisReaderCreate()) {
    TROUPE_CHECK(reader_ != nullptr, "redisReaderCreate failed (out of memory)");
  }
  ~RespHandler() override { redisReaderFree(reader_); }

  void OnOpen(Connection& conn) override { state_.OpenedInLoop(link_, conn); }

  size_t OnData(Connection& conn, std::string_view data) override {
    if (redisReaderFeed(reader_, data.data(), data.size()) != REDIS_OK) {
      Bump(state_.malformed);
      conn.Close(CloseReason::kProtocolError);
      return data.size();
    }
    for (;;) {
      void* reply = nullptr;
      if (redisReaderGetReply(reader_, &reply) != REDIS_OK) {
        TROUPE_LOG_EVERY_SECOND(kWarning, "redis bus: %s: unreadable reply: %s", link_.name,
                                reader_->errstr);
        Bump(state_.malformed);
        conn.Close(CloseReason::kProtocolError);
        break;
      }
      if (reply == nullptr) break;  // need more bytes
      state_.ReplyInLoop(link_, *static_cast<redisReply*>(reply));
      freeReplyObject(reply);
      if (conn.closed()) break;
    }
    // The reader keeps its own copy of what it has not parsed yet.
    return data.size();
  }

  void OnPeerClosed(Connection& conn) override { conn.Close(CloseReason::kPeerClosed); }
  void OnClose(Connection& /*conn*/, CloseReason reason) override {
    state_.ClosedInLoop(link_, reason);
  }

 private:
  RedisBus::State& state_;
  RedisBus::State::Link& link_;
  redisReader* reader_;
};

}  // namespace

void RedisBus::State::ConnectInLoop(Link& link) {
  if (stopping.load(std::memory_order_relaxed)) return;
  loop->Connect(options.redis, options.connect_timeout, std::make_unique<RespHandler>(*this, link),
                [this, &link](absl::StatusOr<ConnectionId> result) {
                  if (result.ok()) return;  // OnOpen follows
                  if (stopping.load(std::memory_order_relaxed)) return;
                  Bump(connect_failures);
                  TROUPE_LOG_EVERY_SECOND(kWarning, "redis bus: %s: %s (retrying in %s)", link.name,
                                          result.status().message(),
                                          absl::FormatDuration(link.backoff));
                  RetryLaterInLoop(link);
                });
}

void RedisBus::State::RetryLaterInLoop(Link& link) {
  const absl::Duration wait = link.backoff;
  link.backoff = std::min(link.backoff * 2, options.max_backoff);
  loop->RunAfter(wait, [this, &link] { ConnectInLoop(link); });
}

void RedisBus::State::OpenedInLoop(Link& link, Connection& conn) {
  link.conn = &conn;
  link.backoff = options.min_backoff;
  Bump(connects);
  TROUPE_LOG(kInfo, "redis bus: %s connected to %s", link.name, options.redis.ToString());
  if (link.subscriber) {
    conn.Send(FormatCommand({"PSUBSCRIBE", options.channel_prefix + "*"}));
  } else {
    // Up once Redis answers, not when the kernel completes the handshake
    // (a stopped Redis still has its listen backlog).
    SendPingInLoop(link);
  }
}

void RedisBus::State::SendPingInLoop(Link& link) {
  link.conn->Send(FormatCommand({"PING"}));
  link.ping_outstanding = true;
  link.ping_sent = absl::Now();
}

void RedisBus::State::PingTickInLoop() {
  if (stopping.load(std::memory_order_relaxed)) return;
  const absl::Time now = absl::Now();
  for (Link* link : {&sub, &pub}) {
    if (link->conn == nullptr || link->conn->closing()) continue;
    if (!link->ping_outstanding) {
      SendPingInLoop(*link);
    } else if (now - link->ping_sent > options.ping_timeout) {
      Bump(ping_timeouts);
      TROUPE_LOG_EVERY_SECOND(kWarning, "redis bus: %s: no answer to PING in %s; reconnecting",
                              link->name, absl::FormatDuration(options.ping_timeout));
      link->conn->Close(CloseReason::kIdleTimeout);
    }
  }
  loop->RunAfter(options.ping_interval, [this] { PingTickInLoop(); });
}

namespace {

// "+PONG" (a plain link) or ["pong", ""] (a subscribed one).
bool IsPong(const redisReply& reply) {
  if (reply.type == REDIS_REPLY_STATUS) return ReplyString(&reply) == "PONG";
  return reply.type == REDIS_REPLY_ARRAY && reply.elements >= 1 &&
         ReplyString(reply.element[0]) == "pong";
}

}  // namespace

void RedisBus::State::ClosedInLoop(Link& link, CloseReason reason) {
  link.conn = nullptr;
  link.ping_outstanding = false;
  if (link.subscriber) {
    subscribed.store(false, std::memory_order_relaxed);
  } else {
    publisher_up.store(false, std::memory_order_relaxed);
    // Sent, maybe published, never confirmed: counted, not guessed.
    Bump(publish_unconfirmed, link.unacknowledged);
    link.unacknowledged = 0;
  }
  if (stopping.load(std::memory_order_relaxed)) return;
  Bump(disconnects);
  TROUPE_LOG_EVERY_SECOND(kWarning, "redis bus: %s lost its connection to %s (%s); reconnecting",
                          link.name, options.redis.ToString(), CloseReasonName(reason));
  RetryLaterInLoop(link);
}

void RedisBus::State::ReplyInLoop(Link& link, const redisReply& reply) {
  if (IsPong(reply)) {
    link.ping_outstanding = false;
    if (!link.subscriber) publisher_up.store(true, std::memory_order_relaxed);
    return;
  }
  if (!link.subscriber) {
    if (link.unacknowledged == 0) {
      Bump(malformed);  // a reply to nothing we sent
      return;
    }
    --link.unacknowledged;
    if (reply.type == REDIS_REPLY_INTEGER) {
      Bump(published);
      Bump(publish_receivers, static_cast<uint64_t>(std::max<long long>(reply.integer, 0)));
    } else {
      Bump(publish_errors);
      TROUPE_LOG_EVERY_SECOND(kWarning, "redis bus: PUBLISH failed: %s",
                              AsAbsl(ReplyString(&reply)));
    }
    return;
  }
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements < 3) {
    Bump(malformed);
    TROUPE_LOG_EVERY_SECOND(kWarning, "redis bus: unexpected reply on the subscriber: %s",
                            AsAbsl(ReplyString(&reply)));
    return;
  }
  const std::string_view kind = ReplyString(reply.element[0]);
  if (kind == "psubscribe") {
    subscribed.store(true, std::memory_order_relaxed);
    return;
  }
  if (kind != "pmessage" || reply.elements != 4) {
    Bump(malformed);
    return;
  }
  std::string_view channel = ReplyString(reply.element[2]);
  const std::string_view message = ReplyString(reply.element[3]);
  const size_t space = message.find(' ');
  if (!channel.starts_with(options.channel_prefix) || space == std::string_view::npos) {
    Bump(malformed);
    return;
  }
  channel.remove_prefix(options.channel_prefix.size());
  if (message.substr(0, space) == options.node_id) {
    Bump(own_skipped);  // our members had it at once, from the Broadcast itself
    return;
  }
  Bump(received);
  if (deliver(channel, message.substr(space + 1))) {
    Bump(delivered);
  } else {
    Bump(deliver_refused);
  }
}

void RedisBus::State::PublishInLoop(std::string command) {
  if (pub.conn == nullptr || pub.conn->closing() ||
      pub.unacknowledged >= options.max_unacknowledged) {
    Bump(taken);
    Bump(publish_dropped);
    return;
  }
  Bump(taken);
  ++pub.unacknowledged;
  pub.conn->Send(command);
  if (pub.conn->closed()) {
    // This very send passed the output cap (slow_consumer): it never went.
    --pub.unacknowledged;
    Bump(publish_dropped);
  }
}

absl::StatusOr<std::unique_ptr<RedisBus>> RedisBus::Create(const RedisBusOptions& options) {
  if (options.min_backoff <= absl::ZeroDuration() || options.max_backoff < options.min_backoff) {
    return absl::InvalidArgumentError("redis bus: backoff must satisfy 0 < min <= max");
  }
  if (IsFiniteTimeout(options.ping_interval) && options.ping_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("redis bus: ping_timeout must be > 0");
  }
  if (options.max_unacknowledged == 0) {
    return absl::InvalidArgumentError("redis bus: max_unacknowledged must be at least 1");
  }
  if (options.node_id.find(' ') != std::string::npos) {
    return absl::InvalidArgumentError("redis bus: the node id must not contain spaces");
  }
  auto state = std::make_shared<State>();
  state->options = options;
  if (state->options.node_id.empty()) state->options.node_id = RandomNodeId();
  state->sub.backoff = state->pub.backoff = options.min_backoff;

  ReactorOptions loop_options;
  loop_options.tag_log_lines = false;
  // A slow Redis is shed by max_unacknowledged first; the output cap is the
  // backstop (then the link is cut and reconnects).
  loop_options.connection.high_watermark = 16 << 20;
  loop_options.connection.low_watermark = 4 << 20;
  loop_options.connection.max_output_bytes = 64 << 20;
  absl::StatusOr<std::unique_ptr<Reactor>> loop =
      Reactor::Create(loop_options, [](Connection&) -> std::unique_ptr<ConnectionHandler> {
        TROUPE_CHECK(false, "the redis bus loop accepts no connections");
        return nullptr;
      });
  if (!loop.ok()) return loop.status();
  state->loop = loop->get();
  return std::unique_ptr<RedisBus>(new RedisBus(*std::move(loop), std::move(state)));
}

RedisBus::RedisBus(std::unique_ptr<Reactor> loop, std::shared_ptr<State> state)
    : state_(std::move(state)), loop_(std::move(loop)) {}

RedisBus::~RedisBus() { Stop(); }

void RedisBus::Start(Deliver deliver) {
  TROUPE_CHECK(!started_, "RedisBus::Start called twice");
  started_ = true;
  state_->deliver = std::move(deliver);
  State* state = state_.get();
  loop_->Post([state] {
    state->ConnectInLoop(state->sub);
    state->ConnectInLoop(state->pub);
    if (IsFiniteTimeout(state->options.ping_interval)) {
      state->loop->RunAfter(state->options.ping_interval, [state] { state->PingTickInLoop(); });
    }
  });
  thread_ = std::thread([loop = loop_.get()] { loop->Run(); });
}

void RedisBus::Stop() {
  if (!started_ || state_->stopping.exchange(true)) return;
  loop_->StopNow();
  thread_.join();
  state_->stopped.store(true, std::memory_order_release);
}

void RedisBus::Publish(std::string_view group, std::string_view text) {
  State& s = *state_;
  // Cheap refusals first: no formatting, no task, while the link is down.
  if (s.stopping.load(std::memory_order_relaxed) ||
      !s.publisher_up.load(std::memory_order_relaxed)) {
    Bump(s.publish_dropped);
    return;
  }
  std::string command =
      FormatCommand({"PUBLISH", absl::StrCat(s.options.channel_prefix, AsAbsl(group)),
                     absl::StrCat(s.options.node_id, " ", AsAbsl(text))});
  State* state = state_.get();
  if (!loop_->TryPost(
          [state, c = std::move(command)]() mutable { state->PublishInLoop(std::move(c)); })) {
    Bump(s.publish_dropped);
  } else {
    Bump(s.posted);
  }
}

RedisBusStats RedisBus::Stats() const {
  const State& s = *state_;
  RedisBusStats out;
  out.subscribed = s.subscribed.load(std::memory_order_relaxed);
  out.publisher_up = s.publisher_up.load(std::memory_order_relaxed);
  out.connects = Read(s.connects);
  out.connect_failures = Read(s.connect_failures);
  out.disconnects = Read(s.disconnects);
  out.ping_timeouts = Read(s.ping_timeouts);
  out.published = Read(s.published);
  out.publish_receivers = Read(s.publish_receivers);
  out.publish_dropped = Read(s.publish_dropped);
  // After Stop, what was posted and never run was dropped too.
  if (s.stopped.load(std::memory_order_acquire)) {
    out.publish_dropped += Read(s.posted) - Read(s.taken);
  }
  out.publish_unconfirmed = Read(s.publish_unconfirmed);
  out.publish_errors = Read(s.publish_errors);
  out.received = Read(s.received);
  out.own_skipped = Read(s.own_skipped);
  out.delivered = Read(s.delivered);
  out.deliver_refused = Read(s.deliver_refused);
  out.malformed = Read(s.malformed);
  return out;
}

const std::string& RedisBus::node_id() const { return state_->options.node_id; }

std::string RedisBus::RenderPrometheus() const {
  const RedisBusStats s = Stats();
  std::string out;
  auto gauge = [&out](const char* name, const char* help, bool value) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " gauge\n", name, " ",
                    value ? 1 : 0, "\n");
  };
  auto counter = [&out](const char* name, const char* help, uint64_t value) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " counter\n", name, " ",
                    value, "\n");
  };
  gauge("troupe_bus_subscribed", "1 while the Redis subscription is live.", s.subscribed);
  gauge("troupe_bus_publisher_up", "1 while Redis answers on the publish link.", s.publisher_up);
  counter("troupe_bus_connects_total", "Redis links opened.", s.connects);
  counter("troupe_bus_connect_failures_total", "Redis connect attempts that failed.",
          s.connect_failures);
  counter("troupe_bus_disconnects_total", "Open Redis links that broke.", s.disconnects);
  counter("troupe_bus_ping_timeouts_total", "Redis links cut because a PING went unanswered.",
          s.ping_timeouts);
  counter("troupe_bus_published_total", "Broadcasts Redis acknowledged.", s.published);
  counter("troupe_bus_publish_receivers_total", "Subscribers Redis said each publish reached.",
          s.publish_receivers);
  counter("troupe_bus_publish_dropped_total",
          "Broadcasts not sent to other nodes (link down or backlog full).", s.publish_dropped);
  counter("troupe_bus_publish_unconfirmed_total",
          "Broadcasts sent whose acknowledgement was lost with the link.", s.publish_unconfirmed);
  counter("troupe_bus_publish_errors_total", "Broadcasts Redis refused.", s.publish_errors);
  counter("troupe_bus_received_total", "Broadcasts received from other nodes.", s.received);
  counter("troupe_bus_own_skipped_total", "Our own broadcasts echoed back by Redis, skipped.",
          s.own_skipped);
  counter("troupe_bus_delivered_total", "Received broadcasts handed to every reactor.",
          s.delivered);
  counter("troupe_bus_deliver_refused_total",
          "Received broadcasts some reactor refused (inbox full).", s.deliver_refused);
  counter("troupe_bus_malformed_total", "Redis replies or bus messages that could not be read.",
          s.malformed);
  return out;
}

}  // namespace troupe
