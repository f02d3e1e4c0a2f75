#include "load/tls_client.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace troupe::load {
namespace {

bool IsIpLiteral(const std::string& name) {
  unsigned char addr[16];
  return ::inet_pton(AF_INET, name.c_str(), addr) == 1 ||
         ::inet_pton(AF_INET6, name.c_str(), addr) == 1;
}

}  // namespace

void SslDeleter::operator()(ssl_st* ssl) const { SSL_free(ssl); }

absl::StatusOr<std::unique_ptr<TlsClient>> TlsClient::Create(const LoadOptions& options) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return absl::InternalError("TLS: SSL_CTX_new failed");
  std::string name = options.tls_server_name;
  if (name.empty()) name = options.target.HostString();
  std::unique_ptr<TlsClient> client(new TlsClient(ctx, name));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Each record written is progress (sent_ counts it); a retried write may
  // come from the same bytes at the same place, but say so anyway.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (options.tls_insecure) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    return client;
  }
  if (SSL_CTX_load_verify_locations(ctx, options.tls_ca_file.c_str(), nullptr) != 1) {
    const unsigned long e = ERR_get_error();
    char reason[256] = "";
    if (e != 0) ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("--tls-ca ", options.tls_ca_file,
                                                   ": cannot load CA certificates (", reason, ")"));
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  return client;
}

TlsClient::~TlsClient() { SSL_CTX_free(ctx_); }

SslPtr TlsClient::NewConnection(int fd) const {
  SslPtr ssl(SSL_new(ctx_));
  if (ssl == nullptr || SSL_set_fd(ssl.get(), fd) != 1) return nullptr;
  SSL_set_connect_state(ssl.get());
  if (!name_.empty()) {
    const bool ip = IsIpLiteral(name_);
    // SNI is for names only (RFC 6066).
    if (!ip) SSL_set_tlsext_host_name(ssl.get(), name_.c_str());
    if (SSL_get_verify_mode(ssl.get()) != SSL_VERIFY_NONE) {
      if (ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), name_.c_str());
      } else {
        SSL_set1_host(ssl.get(), name_.c_str());
      }
    }
  }
  return ssl;
}

std::string TlsErrorText(ssl_st* ssl, int ret, const std::string& what) {
  const int ssl_error = SSL_get_error(ssl, ret);
  std::string text = what;
  const long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    absl::StrAppend(&text, ": certificate verify failed: ", X509_verify_cert_error_string(verify));
  } else if (const unsigned long e = ERR_peek_error(); e != 0) {
    char reason[256];
    ERR_error_string_n(e, reason, sizeof(reason));
    absl::StrAppend(&text, ": ", reason);
  } else if (ssl_error == SSL_ERROR_SYSCALL) {
    const int error = errno;
    // strerror_r, not strerror: worker threads call this concurrently.
    char buffer[256];
    absl::StrAppend(
        &text, ": ",
        error != 0 ? ::strerror_r(error, buffer, sizeof(buffer)) : "connection closed by the peer");
  } else if (ssl_error == SSL_ERROR_ZERO_RETURN) {
    absl::StrAppend(&text, ": closed by the peer (close_notify)");
  } else {
    absl::StrAppend(&text, ": SSL error ", ssl_error);
  }
  ERR_clear_error();
  return text;
}

}  // namespace troupe::load
