#include "core/loop/acceptor.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/base/check.h"
#include "core/base/log.h"
#include "core/net/socket.h"

namespace troupe {
namespace {
// Connections accepted per wake before checking for Stop(): keeps a flood of
// connects from delaying shutdown.
constexpr int kMaxAcceptsPerWake = 256;

}  // namespace

absl::StatusOr<std::unique_ptr<Acceptor>> Acceptor::Create(Fd listen_fd,
                                                          std::vector<Reactor*> reactors,
                                                          Options options) {
  TROUPE_CHECK(!reactors.empty(), "Acceptor needs at least one reactor");
  Fd stop(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!stop.valid()) return absl::ErrnoToStatus(errno, "eventfd for acceptor");
  return std::unique_ptr<Acceptor>(new Acceptor(std::move(listen_fd), std::move(stop),
                                                std::move(reactors), std::move(options)));
}

Acceptor::Acceptor(Fd listen_fd, Fd stop_fd, std::vector<Reactor*> reactors, Options options)
    : listen_fd_(std::move(listen_fd)),
      stop_fd_(std::move(stop_fd)),
      reactors_(std::move(reactors)),
      balance_(options.balance),
      listener_(listen_fd_.get(), options.max_connections, std::move(options.open_count)),
      handed_(reactors_.size(), 0) {
  tokens_.reserve(reactors_.size());
  for (Reactor* r : reactors_) tokens_.push_back(r->MakeHandoffToken());
}

Acceptor::~Acceptor() { Stop(); }

void Acceptor::Start() {
  TROUPE_CHECK(!thread_.joinable(), "Acceptor started twice");
  thread_ = std::thread([this] { Loop(); });
}

void Acceptor::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  while (::write(stop_fd_.get(), &one, sizeof(one)) < 0 && errno == EINTR) {
  }
  thread_.join();
  listen_fd_.Reset();  // refuse further connects at once
}

void Acceptor::Loop() {
  pollfd fds[2] = {{stop_fd_.get(), POLLIN, 0}, {listen_fd_.get(), POLLIN, 0}};
  int pause_ms = -1;
  while (true) {
    // While paused, watch only the stop fd, with a timeout.
    const int rc = ::poll(fds, pause_ms >= 0 ? 1 : 2, pause_ms);
    if (rc < 0 && errno != EINTR) {
      TROUPE_LOG(kError, "acceptor: poll failed: %s; no longer accepting",
                 std::strerror(errno));
      return;
    }
    if (fds[0].revents & POLLIN) return;
    pause_ms = AcceptBatch() ? -1 : kExhaustedPauseMs;
  }
}

bool Acceptor::AcceptBatch() {
  Handoff handoff;
  for (int i = 0; i < kMaxAcceptsPerWake; ++i) {
    switch (listener_.AcceptOne(handoff)) {
      case Listener::Result::kAdmitted: {
        const size_t r = PickReactor();
        ++handed_[r];
        reactors_[r]->Adopt(tokens_[r], std::move(handoff));
        break;
      }
      case Listener::Result::kRejected:
        break;  // counts toward the batch, so Stop() is seen between batches
      case Listener::Result::kEmpty:
        return true;
      case Listener::Result::kExhausted:
      case Listener::Result::kFailed:
        return false;
    }
  }
  return true;
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
