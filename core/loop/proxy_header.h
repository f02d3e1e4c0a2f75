// WithProxyHeader: serves a listener behind a proxy that speaks the PROXY
// protocol (HAProxy `send-proxy` / `send-proxy-v2`): each accepted
// connection's first bytes are the proxy's header naming the real client,
// read before the handler the user's factory makes exists at all.
//
//   HandlerFactory factory = WithProxyHeader(EchoHandlerFactory(), absl::Seconds(5));
//   auto reactor = Reactor::Create(options, factory).value();
//   // Server does this itself with ServerOptions::proxy_protocol.
//
// What each connection goes through (a decorator handler, on its reactor):
//
//   accepted ──► awaiting the header: OnData consumes nothing and parses all
//     │          it has (core/net/proxy_protocol.h); up to kProxyHeaderMaxBytes
//     │          may wait (input_limit), whatever max_input_bytes says
//     ├─ done:     Connection::set_peer_in_loop(source) unless "local", then
//     │            inner = factory(conn), inner->OnOpen, and the bytes that
//     │            came with the header go to inner->OnData; from then on every
//     │            callback is the inner handler's
//     ├─ invalid:  closed, kProxyHeaderInvalid (logged at most once a second);
//     │            so is an EOF after part of a header (an EOF before any byte
//     │            is an ordinary peer_closed: a TCP health check)
//     └─ timeout:  closed, kProxyHeaderTimeout
//
// So the user's factory and OnOpen already see the client's address, and a
// connection that never completes its header gets no inner handler and so no
// OnOpen or OnClose. Mail for it before then is dropped and counted (gone):
// no actor exists yet that anyone could have meant.
//
// The timeout is the connection's own deadline (Connection::
// SetOpeningDeadline, its one TimerWheel entry), cleared when the header is
// complete: it costs no timer of its own and leaves nothing behind when the
// connection closes, however many connections come and go.
//
// Thread safety: the factory it returns is thread-safe if `inner` is (each
// reactor calls it); each handler is loop-affine, like every handler.
#pragma once

#include "absl/time/time.h"
#include "core/loop/reactor.h"

namespace troupe {

// Wraps `inner` so that each connection reads a PROXY protocol header (v1 or
// v2) first. `timeout` > 0 bounds the wait for it; infinite: no bound.
HandlerFactory WithProxyHeader(HandlerFactory inner, absl::Duration timeout);

}  // namespace troupe
