// Transport: what turns a connection's wire bytes into the plaintext its
// handler sees and back (TLS, in troupe_tls: core/net/tls.h), without doing
// any socket I/O itself. The Connection still does every recv and send; the
// transport only transforms bytes in memory:
//
//   socket ──recv──► scratch ──Feed──► transport ──Read──► plaintext ──► handler->OnData
//   handler: conn.Send(plaintext) ──Write──► transport ──sink──► write-through / output_
//
// so the connection's output limits, watermarks and flush deadlines apply to
// the bytes on the wire, and a connection without a transport (the default)
// pays one null-pointer check and nothing else.
//
//   std::shared_ptr<TransportFactory> tls = NewTlsServerFactory({cert, key}).value();
//   ServerOptions options;
//   options.transport = tls;   // every accepted connection gets its own Transport
//
// The connection drives it: it Feeds every byte it receives, then calls Read
// until it answers kNeedInput (or it must stop: the handler paused, the
// output is behind); the handshake runs inside Read and its replies go to
// the sink. kHandshakeDone comes once, before any plaintext: the connection
// then gives its handler OnOpen (so a handler only ever meets a peer whose
// handshake is complete). Shutdown writes the closing message (TLS:
// close_notify) to the sink before the connection sends its FIN.
//
// Thread safety: a Transport is loop-affine (its connection's reactor); a
// TransportFactory is called from every reactor, so it must be thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"

namespace troupe {

// Where a transport puts bytes for the wire: the connection's own send path
// (write-through, then its output buffer), in order. Never blocks.
using TransportSink = absl::FunctionRef<void(std::string_view)>;

class Transport {
 public:
  enum class ReadStatus : uint8_t {
    kData,           // `size` bytes of plaintext were read
    kHandshakeDone,  // the handshake just completed (once); no plaintext yet
    kNeedInput,      // nothing more until more bytes are fed
    kPeerClosed,     // the peer's orderly close (TLS close_notify): its EOF
    kFailed,         // a bad handshake or record; error() says what
  };
  struct ReadResult {
    ReadStatus status;
    size_t size = 0;
  };

  virtual ~Transport() = default;

  // Bytes received from the socket, in order; kept until Read consumes them.
  virtual void Feed(std::string_view wire) = 0;
  // Runs the handshake while it is under way (its messages go to `sink`),
  // then decrypts at most `capacity` bytes of plaintext into `plain`.
  virtual ReadResult Read(char* plain, size_t capacity, TransportSink sink) = 0;
  // Encodes `plain` for the wire into `sink`. Before the handshake is done it
  // is held and written once it is. False: failed (error()).
  virtual bool Write(std::string_view plain, TransportSink sink) = 0;
  // Writes the orderly close (TLS: close_notify) into `sink`; at most once,
  // and only after the handshake (before it, there is nothing to close).
  virtual void Shutdown(TransportSink sink) = 0;
  virtual bool handshake_done() const = 0;
  // Why the last Read or Write failed, for the log.
  virtual std::string error() const = 0;
};

class TransportFactory {
 public:
  virtual ~TransportFactory() = default;
  // The server side of one accepted connection. Any thread.
  virtual absl::StatusOr<std::unique_ptr<Transport>> NewServerTransport() = 0;
};

}  // namespace troupe
