#include "actors/actor.h"

#include <exception>
#include <utility>

namespace troupe {
namespace {

// The ConnectionHandler that runs one Actor: the single place where actor
// callbacks are dispatched and where an escaped exception is caught.
class ActorHost final : public ConnectionHandler {
 public:
  explicit ActorHost(std::unique_ptr<Actor> actor) : actor_(std::move(actor)) {}

  void OnOpen(Connection& conn) override {
    Dispatch(conn, [&](Context& ctx) { actor_->OnOpen(ctx); });
  }

  size_t OnData(Connection& conn, std::string_view data) override {
    Dispatch(conn, [&](Context& ctx) { actor_->OnMessage(ctx, data); });
    return data.size();
  }

  void OnMail(Connection& conn, Mail mail) override {
    mailbox_.push_back(std::move(mail));
    // Drain in arrival order; mail that an OnMail sends to itself goes
    // through the inbox again, so this loop cannot recurse.
    while (!mailbox_.empty() && !conn.closed()) {
      Mail next = std::move(mailbox_.front());
      mailbox_.pop_front();
      Dispatch(conn, [&](Context& ctx) { actor_->OnMail(ctx, std::move(next)); });
    }
  }

  void OnClose(Connection& conn, CloseReason reason) override {
    mailbox_.clear();
    Context ctx(conn);
    try {
      actor_->OnClose(ctx, reason);
    } catch (...) {
      // Nothing left to close; the reactor must survive.
    }
  }

 private:
  template <typename Fn>
  void Dispatch(Connection& conn, Fn&& fn) {
    Context ctx(conn);
    try {
      fn(ctx);
    } catch (...) {
      conn.Close(CloseReason::kHandlerError);
    }
  }

  std::unique_ptr<Actor> actor_;
  std::deque<Mail> mailbox_;  // mail not yet handed to OnMail
};

}  // namespace

HandlerFactory ActorFactory(std::function<std::unique_ptr<Actor>()> make) {
  return [make = std::move(make)](Connection&) -> std::unique_ptr<ConnectionHandler> {
    return std::make_unique<ActorHost>(make());
  };
}

}  // namespace troupe
