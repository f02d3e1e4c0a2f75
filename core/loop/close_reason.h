// CloseReason: why a connection ended. Each close is counted by reason per
// reactor (troupe_connections_closed_total{reason=...}), accepted and outbound
// (Reactor::Connect) connections alike; an outbound attempt that never opened
// ends with one of these too (kConnectFailed, kConnectTimeout, or whatever
// closed it while it was connecting).
//
//   if (reason == CloseReason::kSlowConsumer) ...   // in OnClose
//
// Thread safety: values only.
#pragma once

#include <cstdint>

namespace troupe {

// Why a connection ended. Counted per reactor; a new reason goes at the end
// (before kCount) and gets a name in CloseReasonName().
enum class CloseReason : uint8_t {
  kPeerClosed,           // orderly EOF from the peer, after our output drained
  kPeerReset,            // ECONNRESET / EPIPE
  kSocketError,          // any other recv/send error
  kLocalClose,           // the handler called Close()
  kFlushedClose,         // CloseAfterFlush() completed and the peer closed
  kLingerTimeout,        // CloseAfterFlush(): the peer did not close in time
  kInputTooLarge,        // unconsumed input above ConnectionOptions::max_input_bytes
  kProtocolError,        // the handler rejected the input (bad frame, too long)
  kHandlerError,         // the handler failed (e.g. threw)
  kShutdown,             // the server stopped and the drain deadline passed
  kIdleTimeout,          // no bytes either way for ReactorOptions::idle_timeout
  kSlowConsumer,         // queued output would pass ConnectionOptions::max_output_bytes
  kFlushTimeout,         // CloseAfterFlush(): the output did not drain in flush_timeout
  kMailboxOverflow,      // mail at a full mailbox under MailboxOverflow::kCloseActor
  kConnectFailed,        // Reactor::Connect: connect() failed (refused, unreachable, no socket)
  kConnectTimeout,       // Reactor::Connect: the connection did not open within its timeout
  kProxyHeaderInvalid,   // ServerOptions::proxy_protocol: a malformed or cut-short header
  kProxyHeaderTimeout,   // ServerOptions::proxy_protocol: no complete header in time
  kTlsHandshakeFailed,   // ServerOptions::transport: a failed, garbage or cut-short handshake
  kTlsHandshakeTimeout,  // ServerOptions::transport: no complete handshake in handshake_timeout
  kTlsError,             // ServerOptions::transport: a record or alert failed after the handshake
  kCount,
};
const char* CloseReasonName(CloseReason reason);

}  // namespace troupe
