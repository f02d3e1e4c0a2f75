#include "actors/builtin.h"

#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/base/string_view_compat.h"

namespace troupe {

void UpperActor::OnMessage(Context& ctx, Bytes message) {
  scratch_.assign(message.data(), message.size());
  for (char& c : scratch_) c = absl::ascii_toupper(static_cast<unsigned char>(c));
  ctx.WriteFrame(scratch_);
}

void AckActor::OnMessage(Context& ctx, Bytes line) {
  scratch_.assign("received: ");
  scratch_.append(line);
  ctx.WriteFrame(scratch_);
}

void ChatActor::OnOpen(Context& ctx) {
  name_ = ctx.peer().ToString();
  ctx.Join(kRoom);
}

void ChatActor::OnMessage(Context& ctx, Bytes line) {
  std::string text;
  text.reserve(name_.size() + 2 + line.size());
  text.append(name_).append(": ").append(line);
  ctx.Broadcast(kRoom, std::move(text));
}

void ChatActor::OnMail(Context& ctx, Mail mail) {
  // Shed, not queue, for a member that is behind: one member that never
  // reads must cost the server neither memory nor the other members' lines.
  if (const GroupMessage* message = mail.Get<GroupMessage>()) {
    ctx.TryWriteFrame(message->text);
  }
}

void WorkActor::SpinFor(int64_t work_us) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(work_us);
  // Real CPU work, not a sleep: the point is to occupy a core.
  volatile uint64_t sink = 0;
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < 256; ++i) sink = sink * 6364136223846793005ull + 1;
  }
}

void WorkActor::OnMessage(Context& ctx, Bytes line) {
  ctx.Offload(
      [work = work_, us = work_us_, text = std::string(line)]() mutable {
        work(us);
        return std::move(text);
      },
      [](Context& done_ctx, std::string text) { done_ctx.WriteFrame(text); });
}

std::string BuiltinModes() { return "echo, upper, ack, chat, work"; }

absl::StatusOr<HandlerFactory> MakeBuiltinFactory(const BuiltinOptions& options) {
  const std::string& mode = options.mode;
  const bool byte_mode = mode == "echo" || mode == "upper";
  if (!byte_mode && mode != "ack" && mode != "chat" && mode != "work") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown mode '", mode, "' (known: ", BuiltinModes(), ")"));
  }
  ActorOptions actor_options;
  actor_options.offload = options.offload;
  actor_options.codec.max_line = options.max_line;
  actor_options.codec.max_frame = options.max_frame;
  if (options.codec.empty()) {
    actor_options.codec.kind = byte_mode ? CodecKind::kRaw : CodecKind::kLines;
  } else {
    absl::StatusOr<CodecKind> kind = ParseCodecKind(options.codec);
    if (!kind.ok()) return kind.status();
    if (!byte_mode && *kind == CodecKind::kRaw) {
      return absl::InvalidArgumentError(
          absl::StrCat("mode '", mode, "' works on messages: use codec lines or length"));
    }
    actor_options.codec.kind = *kind;
  }
  if (options.work_us < 0) {
    return absl::InvalidArgumentError("work_us must not be negative");
  }
  std::function<std::unique_ptr<Actor>()> make;
  if (mode == "echo") {
    make = [] { return std::make_unique<EchoActor>(); };
  } else if (mode == "upper") {
    make = [] { return std::make_unique<UpperActor>(); };
  } else if (mode == "ack") {
    make = [] { return std::make_unique<AckActor>(); };
  } else if (mode == "chat") {
    make = [] { return std::make_unique<ChatActor>(); };
  } else {
    make = [us = options.work_us] { return std::make_unique<WorkActor>(us); };
  }
  return ActorFactory(std::move(make), actor_options);
}

}  // namespace troupe
