// TLS for a troupe server, with the distribution's OpenSSL 3: a
// TransportFactory (core/net/transport.h) whose transports run OpenSSL over
// two memory BIOs, so the connection keeps every socket call (and its
// output limits) and OpenSSL never touches a descriptor.
//
//   absl::StatusOr<std::shared_ptr<TransportFactory>> tls =
//       NewTlsServerFactory({.cert_file = "/etc/troupe/cert.pem",
//                            .key_file = "/etc/troupe/key.pem"});
//   if (!tls.ok()) { /* "TLS key /etc/troupe/key.pem: does not match the
//                        certificate /etc/troupe/cert.pem" */ }
//   ServerOptions options;
//   options.transport = *tls;
//
// In library troupe_tls (link it only where TLS is used; it brings libssl
// and libcrypto): troupe_core itself neither includes nor links OpenSSL.
//
// Policy: TLS 1.2 at least (OpenSSL's default ciphers and groups), no
// renegotiation (SSL_OP_NO_RENEGOTIATION: a client cannot make the server
// redo the expensive half of a handshake at will), no client certificates.
// Record buffers are released while idle (SSL_MODE_RELEASE_BUFFERS), so an
// idle TLS connection holds a few KiB, not two 17 KiB record buffers.
//
// Thread safety: the factory is thread-safe (every reactor calls it; the
// SSL_CTX is read-only once built); each transport is loop-affine.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/net/transport.h"

namespace troupe {

struct TlsServerOptions {
  // PEM: the server's certificate, then any intermediates (a chain file).
  std::string cert_file;
  // PEM: its private key, unencrypted.
  std::string key_file;
};

// Loads and checks the certificate and key. Errors name the file: one that
// cannot be read, is not PEM, or a key that does not match the certificate.
absl::StatusOr<std::shared_ptr<TransportFactory>> NewTlsServerFactory(
    const TlsServerOptions& options);

}  // namespace troupe
