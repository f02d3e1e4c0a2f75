// Socket helpers: the few setup-time syscalls every server and client needs,
// each returning absl::Status that names what failed and where.
//
//   absl::StatusOr<Fd> listener = ListenTcp(*address, {.reuse_port = false});
//   if (!listener.ok()) { /* "bind 127.0.0.1:7007: Address already in use" */ }
//   Address bound = LocalAddress(listener->get()).value();   // real port for :0
//
// Thread safety: thread-safe (free functions over caller-owned descriptors).
#pragma once

#include <sys/socket.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/base/fd.h"
#include "core/net/address.h"

namespace troupe {

struct ListenOptions {
  int backlog = SOMAXCONN;
  // One listener per reactor (SO_REUSEPORT) instead of one shared acceptor.
  bool reuse_port = false;
  // TCP_DEFER_ACCEPT (nginx's `listen ... deferred`, systemd's
  // DeferAcceptSec=): a connection is accepted only once its first bytes
  // arrived (or after about this many seconds without). For protocols where
  // the client speaks first; it also lets a draining server answer every
  // connection it accepted (core/ops/handoff.h). 0: off.
  int defer_accept_seconds = 0;
};

// socket + SO_REUSEADDR (+ SO_REUSEPORT) + bind + listen; non-blocking, CLOEXEC.
absl::StatusOr<Fd> ListenTcp(const Address& address, const ListenOptions& options = {});

// Takes ownership of `fd`, a socket someone else bound and listens on (one
// systemd passed, or one received from the process we take over from,
// core/ops/handoff.h): checks that it is a listening TCP socket (SO_ACCEPTCONN,
// SO_TYPE, SO_DOMAIN) and makes it non-blocking and close-on-exec. `fd` is
// closed when the check fails. Errors name the descriptor.
absl::StatusOr<Fd> AdoptListeningSocket(int fd);

// Starts a non-blocking connect; completion is signalled by writability.
// EINPROGRESS is success here. `source` (optional) binds the local address
// first, which lets a client use several 127.0.0.x sources.
absl::StatusOr<Fd> ConnectTcpNonBlocking(const Address& address, const Address* source = nullptr);
// A blocking connect, for tests and tools (the socket stays blocking).
absl::StatusOr<Fd> ConnectTcpBlocking(const Address& address);

absl::StatusOr<Address> LocalAddress(int fd);

// TCP_NODELAY: without it Nagle plus delayed ACK stall small
// request/response traffic by ~40 ms.
absl::Status SetNoDelay(int fd);
absl::Status SetNonBlocking(int fd);

}  // namespace troupe
