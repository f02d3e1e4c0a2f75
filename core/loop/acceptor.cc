#include "core/loop/acceptor.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/base/check.h"
#include "core/base/log.h"
#include "core/net/socket.h"

namespace troupe {

absl::StatusOr<std::unique_ptr<Acceptor>> Acceptor::Create(Fd listen_fd,
                                                           std::vector<Reactor*> reactors,
                                                           Options options) {
  TROUPE_CHECK(!reactors.empty(), "Acceptor needs at least one reactor");
  ReactorOptions loop_options;
  loop_options.tag_log_lines = false;
  // The listener dispatches every socket, so this loop never adopts one.
  absl::StatusOr<std::unique_ptr<Reactor>> loop =
      Reactor::Create(loop_options, [](Connection&) -> std::unique_ptr<ConnectionHandler> {
        TROUPE_CHECK(false, "the acceptor's loop adopted a connection");
        return nullptr;
      });
  if (!loop.ok()) return loop.status();
  std::unique_ptr<Acceptor> acceptor(
      new Acceptor(std::move(*loop), std::move(reactors), options.balance));
  auto listener = std::make_unique<Listener>(listen_fd.get(), options.max_connections,
                                             std::move(options.open_count));
  acceptor->listener_ = listener.get();
  ListenerOptions listener_options;
  Acceptor* self = acceptor.get();
  listener_options.dispatch = [self](Handoff handoff) { self->Dispatch(std::move(handoff)); };
  acceptor->loop_->AddListener(std::move(listen_fd), std::move(listener),
                               std::move(listener_options));
  return acceptor;
}

Acceptor::Acceptor(std::unique_ptr<Reactor> loop, std::vector<Reactor*> reactors, Balance balance)
    : loop_(std::move(loop)),
      reactors_(std::move(reactors)),
      balance_(balance),
      handed_(reactors_.size(), 0) {
  tokens_.reserve(reactors_.size());
  for (Reactor* r : reactors_) tokens_.push_back(r->MakeHandoffToken());
}

Acceptor::~Acceptor() { Stop(); }

void Acceptor::Start() {
  TROUPE_CHECK(!thread_.joinable(), "Acceptor started twice");
  thread_ = std::thread([this] { loop_->Run(); });
}

void Acceptor::Stop() {
  if (!thread_.joinable()) return;
  loop_->StopNow();  // its Run() closes the listener: new connects are refused at once
  thread_.join();
}

void Acceptor::Dispatch(Handoff handoff) {
  const size_t r = PickReactor();
  ++handed_[r];
  reactors_[r]->Adopt(tokens_[r], std::move(handoff));
}

size_t Acceptor::PickReactor() {
  if (balance_ == Balance::kLeastLoaded) {
    // Fewest open: handed over by us minus closed by it. O(reactors).
    size_t best = 0;
    uint64_t best_open = UINT64_MAX;
    for (size_t i = 0; i < reactors_.size(); ++i) {
      const uint64_t closed = reactors_[i]->ClosedCount();
      const uint64_t open = handed_[i] > closed ? handed_[i] - closed : 0;
      if (open < best_open) {
        best_open = open;
        best = i;
      }
    }
    return best;
  }
  const size_t r = next_;
  next_ = next_ + 1 == reactors_.size() ? 0 : next_ + 1;
  return r;
}

}  // namespace troupe
