// The built-in actors behind `echo-cluster --mode`:
//
//   echo   writes back every message (raw codec by default: every byte)
//   upper  writes back every message upper-cased (ASCII)
//   ack    per line: "received: <line>"
//   chat   every line goes to every other client, on every reactor, as
//          "<sender address>: <line>" (exercises cross-reactor mail); a
//          member that is behind (not reading) misses lines rather than
//          growing the server's memory (counted as frames shed)
//   work   each line costs `work_us` of CPU on the offload pool, then is
//          echoed; the reactor stays free for other connections meanwhile
//
//   BuiltinOptions options;
//   options.mode = "chat";
//   absl::StatusOr<HandlerFactory> factory = MakeBuiltinFactory(options);
//
// Thread safety: the actors are loop-affine; MakeBuiltinFactory is thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "actors/actor.h"

namespace troupe {

class EchoActor final : public Actor {
 public:
  void OnMessage(Context& ctx, Bytes message) override { ctx.WriteFrame(message); }
};

class UpperActor final : public Actor {
 public:
  void OnMessage(Context& ctx, Bytes message) override;

 private:
  std::string scratch_;  // reused: no allocation per message once warm
};

class AckActor final : public Actor {
 public:
  void OnMessage(Context& ctx, Bytes line) override;

 private:
  std::string scratch_;
};

class ChatActor final : public Actor {
 public:
  static constexpr char kRoom[] = "chat";
  void OnOpen(Context& ctx) override;
  void OnMessage(Context& ctx, Bytes line) override;
  void OnMail(Context& ctx, Mail mail) override;

 private:
  std::string name_;  // the peer's address, computed once
};

class WorkActor final : public Actor {
 public:
  // The CPU work for one line; replaceable so tests can control it.
  using WorkFn = std::function<void(int64_t work_us)>;
  explicit WorkActor(int64_t work_us, WorkFn work = SpinFor)
      : work_us_(work_us), work_(std::move(work)) {}

  // Replies come back in request order (Offload keeps submission order),
  // and a half-close or the server's drain waits for the replies owed (the
  // default OnPeerClosed's CloseAfterFlush does).
  void OnMessage(Context& ctx, Bytes line) override;

  // Burns CPU for `work_us` microseconds (a stand-in for real computation).
  static void SpinFor(int64_t work_us);

 private:
  int64_t work_us_;
  WorkFn work_;
};

struct BuiltinOptions {
  std::string mode = "echo";
  // Empty: the mode's natural codec (echo/upper raw, ack/chat/work lines).
  std::string codec;
  size_t max_line = 64 * 1024;
  size_t max_frame = 16u << 20;
  int64_t work_us = 1000;
  OffloadPool* offload = nullptr;  // nullptr: OffloadPool::Default()
};

// Names of the modes, for help texts: "echo, upper, ack, chat, work".
std::string BuiltinModes();

// InvalidArgument for an unknown mode or codec, or a mode/codec mismatch.
absl::StatusOr<HandlerFactory> MakeBuiltinFactory(const BuiltinOptions& options);

}  // namespace troupe
