// chat-room: a line-based chat across every reactor. "/nick NAME" sets your
// name; any other line goes to everyone else in the room.
// Usage: chat-room [port]   (0 or none: a free port, printed at start)
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "actors/actor.h"
#include "core/ops/signals.h"
#include "core/server.h"

class ChatRoomActor final : public troupe::Actor {
 public:
  void OnOpen(troupe::Context& ctx) override {
    nick_ = ctx.peer().ToString();
    ctx.Join("lobby");
    ctx.Broadcast("lobby", "* " + nick_ + " joined");
  }

  void OnMessage(troupe::Context& ctx, troupe::Bytes line) override {
    if (line.substr(0, 6) == "/nick " && line.size() > 6) {
      std::string old = std::move(nick_);
      nick_ = std::string(line.substr(6));
      ctx.Broadcast("lobby", "* " + old + " is now " + nick_, /*include_self=*/true);
      return;
    }
    ctx.Broadcast("lobby", nick_ + ": " + std::string(line));
  }

  // Other members' lines arrive as mail, on this actor's own reactor.
  void OnMail(troupe::Context& ctx, troupe::Mail mail) override {
    if (const auto* message = mail.Get<troupe::GroupMessage>()) {
      ctx.WriteFrame(message->text);
    }
  }

  void OnClose(troupe::Context& ctx, troupe::CloseReason) override {
    ctx.Broadcast("lobby", "* " + nick_ + " left");
  }

 private:
  std::string nick_;
};

int main(int argc, char* argv[]) {
  troupe::ServerOptions options;
  const int port = argc > 1 ? std::atoi(argv[1]) : 0;
  options.address = troupe::Address::FromHostPort("127.0.0.1", static_cast<uint16_t>(port)).value();
  troupe::ActorOptions actors;
  actors.codec.kind = troupe::CodecKind::kLines;
  return troupe::ServeUntilStopSignal(
      "chat-room", options,
      troupe::ActorFactory([] { return std::make_unique<ChatRoomActor>(); }, actors));
}
