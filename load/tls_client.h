// The client side of echo-load --tls: one OpenSSL client context per run,
// and a fresh SSL on each connection's own non-blocking socket (SSL_set_fd),
// which load/session.cc then drives through its edge-triggered loop
// (SSL_connect, SSL_read until it wants more, SSL_write retried with the
// same arguments after WANT_WRITE, SSL_shutdown for close_notify).
//
//   absl::StatusOr<std::unique_ptr<TlsClient>> tls = TlsClient::Create(options);
//   SslPtr ssl = (*tls)->NewConnection(fd);   // null: out of memory
//
// Verification (LoadOptions::tls_ca_file): the server's chain against those
// CAs, and its name: tls_server_name, else the target's host (an IP literal
// is checked as an IP address). tls_insecure: nothing is verified.
//
// Thread safety: Create on one thread; NewConnection from any (the SSL_CTX
// is read-only once built).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "load/load_client.h"

struct ssl_st;      // OpenSSL's SSL
struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace troupe::load {

struct SslDeleter {
  void operator()(ssl_st* ssl) const;
};
using SslPtr = std::unique_ptr<ssl_st, SslDeleter>;

class TlsClient {
 public:
  // Errors name the CA file that cannot be loaded.
  static absl::StatusOr<std::unique_ptr<TlsClient>> Create(const LoadOptions& options);
  ~TlsClient();
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  // A client SSL on `fd` (not owned), in connect state, with SNI and the
  // name to verify set. Null when OpenSSL cannot allocate one.
  SslPtr NewConnection(int fd) const;

 private:
  TlsClient(ssl_ctx_st* ctx, std::string name) : ctx_(ctx), name_(std::move(name)) {}
  ssl_ctx_st* const ctx_;
  const std::string name_;  // SNI and verified name; empty: none
};

// "what: OpenSSL's reason" for the error `ssl_error` (SSL_get_error) of the
// call that returned `ret` on `ssl`; a failed certificate check says why.
// Empties the thread's OpenSSL error queue.
std::string TlsErrorText(ssl_st* ssl, int ret, const std::string& what);

}  // namespace troupe::load
