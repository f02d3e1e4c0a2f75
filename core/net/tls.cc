#include "core/net/tls.h"

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace troupe {
namespace {

// Plaintext per SSL_write: one TLS record's worth.
constexpr size_t kRecordPlaintext = 16 << 10;
// Ciphertext gathered in the write BIO before it goes to the sink: a few
// records per send(), without one large message's ciphertext sitting in
// memory all at once.
constexpr size_t kFlushBytes = 64 << 10;
// A write BIO grown past this (a large message went through it) is replaced
// once emptied rather than reset: resetting clears its whole capacity, which
// every later small message would then pay for.
constexpr size_t kKeepWriteBioBytes = 4 << 10;

// What OpenSSL's error queue says, after `what`; empties the queue.
std::string SslErrorText(std::string_view what, int ssl_error = 0) {
  std::string text(what);
  const unsigned long first = ERR_get_error();
  if (first != 0) {
    char buffer[256];
    ERR_error_string_n(first, buffer, sizeof(buffer));
    absl::StrAppend(&text, ": ", buffer);
  } else if (ssl_error == SSL_ERROR_SYSCALL) {
    absl::StrAppend(&text, ": unexpected end of the stream");
  } else if (ssl_error != 0) {
    absl::StrAppend(&text, ": SSL error ", ssl_error);
  }
  ERR_clear_error();
  return text;
}

BIO* NewMemoryBio() {
  BIO* bio = BIO_new(BIO_s_mem());
  // Empty means "no bytes yet" (retry), never end of stream: the end comes
  // from the socket, which the connection reads itself.
  if (bio != nullptr) BIO_set_mem_eof_return(bio, -1);
  return bio;
}

class TlsTransport final : public Transport {
 public:
  // Takes `ssl`, which owns both BIOs.
  TlsTransport(SSL* ssl, BIO* rbio, BIO* wbio) : ssl_(ssl), rbio_(rbio), wbio_(wbio) {}
  ~TlsTransport() override { SSL_free(ssl_); }
  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  void Feed(std::string_view wire) override {
    while (!wire.empty() && !failed_) {
      const int n =
          BIO_write(rbio_, wire.data(), static_cast<int>(std::min<size_t>(wire.size(), INT_MAX)));
      if (n <= 0) {
        // Out of memory: the next Read reports it.
        failed_ = true;
        error_ = SslErrorText("TLS: buffering received bytes");
        return;
      }
      wire.remove_prefix(static_cast<size_t>(n));
    }
  }

  ReadResult Read(char* plain, size_t capacity, TransportSink sink) override {
    if (failed_) return {ReadStatus::kFailed};
    ERR_clear_error();
    if (!done_) {
      const int r = SSL_do_handshake(ssl_);
      const int ssl_error = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, r);
      // Our half of the handshake, or the alert that ends it.
      Flush(sink);
      if (r == 1) {
        done_ = true;
        if (!early_.empty()) {
          // Written before the handshake was done: out now, in order.
          std::string early = std::move(early_);
          early_.clear();
          if (!Write(early, sink)) return {ReadStatus::kFailed};
        }
        return {ReadStatus::kHandshakeDone};
      }
      if (ssl_error == SSL_ERROR_WANT_READ) return {ReadStatus::kNeedInput};
      return Fail(SslErrorText("TLS handshake", ssl_error));
    }
    const int r = SSL_read(ssl_, plain, static_cast<int>(std::min<size_t>(capacity, INT_MAX)));
    const int ssl_error = r > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl_, r);
    // Whatever reading made OpenSSL say (a key update's answer, an alert).
    Flush(sink);
    if (r > 0) return {ReadStatus::kData, static_cast<size_t>(r)};
    switch (ssl_error) {
      case SSL_ERROR_WANT_READ:
        return {ReadStatus::kNeedInput};
      case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return {ReadStatus::kPeerClosed};
      default:
        return Fail(SslErrorText("TLS record", ssl_error));
    }
  }

  bool Write(std::string_view plain, TransportSink sink) override {
    if (failed_) return false;
    if (!done_) {
      early_.append(plain);
      return true;
    }
    ERR_clear_error();
    while (!plain.empty()) {
      // A memory BIO takes everything, so SSL_write never wants to wait.
      const size_t chunk = std::min(plain.size(), kRecordPlaintext);
      const int r = SSL_write(ssl_, plain.data(), static_cast<int>(chunk));
      if (r <= 0) {
        Flush(sink);
        Fail(SslErrorText("TLS write", SSL_get_error(ssl_, r)));
        return false;
      }
      plain.remove_prefix(static_cast<size_t>(r));
      if (plain.empty() || BIO_ctrl_pending(wbio_) >= kFlushBytes) Flush(sink);
    }
    return true;
  }

  void Shutdown(TransportSink sink) override {
    if (!done_ || shut_ || failed_) return;
    shut_ = true;
    ERR_clear_error();
    // Sends close_notify; never waits for the peer's (that is its EOF,
    // which Read reports).
    (void)SSL_shutdown(ssl_);
    Flush(sink);
    ERR_clear_error();
  }

  bool handshake_done() const override { return done_; }
  std::string error() const override { return error_; }

 private:
  ReadResult Fail(std::string why) {
    failed_ = true;
    error_ = std::move(why);
    return {ReadStatus::kFailed};
  }

  // Hands what OpenSSL wrote to the sink, in one piece.
  void Flush(TransportSink sink) {
    char* data = nullptr;
    const long pending = BIO_get_mem_data(wbio_, &data);
    if (pending <= 0) return;
    sink(std::string_view(data, static_cast<size_t>(pending)));
    BUF_MEM* memory = nullptr;
    BIO_get_mem_ptr(wbio_, &memory);
    if (done_ && memory != nullptr && memory->max > kKeepWriteBioBytes) {
      if (BIO* fresh = NewMemoryBio(); fresh != nullptr) {
        SSL_set0_wbio(ssl_, fresh);  // frees the old one
        wbio_ = fresh;
        return;
      }
    }
    (void)BIO_reset(wbio_);
  }

  SSL* const ssl_;
  BIO* const rbio_;  // ciphertext received, owned by ssl_
  BIO* wbio_;        // ciphertext to send, owned by ssl_
  bool done_ = false;
  bool shut_ = false;
  bool failed_ = false;
  std::string early_;  // plaintext written before the handshake completed
  std::string error_;
};

class TlsServerFactory final : public TransportFactory {
 public:
  explicit TlsServerFactory(SSL_CTX* ctx) : ctx_(ctx) {}
  ~TlsServerFactory() override { SSL_CTX_free(ctx_); }
  TlsServerFactory(const TlsServerFactory&) = delete;
  TlsServerFactory& operator=(const TlsServerFactory&) = delete;

  absl::StatusOr<std::unique_ptr<Transport>> NewServerTransport() override {
    SSL* ssl = SSL_new(ctx_);
    BIO* rbio = NewMemoryBio();
    BIO* wbio = NewMemoryBio();
    if (ssl == nullptr || rbio == nullptr || wbio == nullptr) {
      SSL_free(ssl);
      BIO_free(rbio);
      BIO_free(wbio);
      return absl::ResourceExhaustedError(SslErrorText("TLS: creating a connection's state"));
    }
    SSL_set_bio(ssl, rbio, wbio);  // ssl owns both from here
    SSL_set_accept_state(ssl);
    return std::unique_ptr<Transport>(std::make_unique<TlsTransport>(ssl, rbio, wbio));
  }

 private:
  SSL_CTX* const ctx_;
};

// Whether `path` can be opened for reading; else why not, naming it.
absl::Status CheckReadable(const char* what, const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "r");
  if (file == nullptr) {
    const int error = errno;
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, ": cannot read: ", std::strerror(error)));
  }
  std::fclose(file);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<TransportFactory>> NewTlsServerFactory(
    const TlsServerOptions& options) {
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate file and a key file");
  }
  if (absl::Status s = CheckReadable("TLS certificate", options.cert_file); !s.ok()) return s;
  if (absl::Status s = CheckReadable("TLS key", options.key_file); !s.ok()) return s;
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError(SslErrorText("TLS: SSL_CTX_new"));
  // Owned by the factory from here, so every error below frees it.
  auto factory = std::make_shared<TlsServerFactory>(ctx);
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
    return absl::InternalError(SslErrorText("TLS: setting TLS 1.2 as the minimum"));
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(ctx, options.cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(
        SslErrorText(absl::StrCat("TLS certificate ", options.cert_file, ": not usable")));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    // OpenSSL checks the pair as it loads the key: say so in our words.
    const unsigned long e = ERR_peek_error();
    if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      return absl::InvalidArgumentError(absl::StrCat(
          "TLS key ", options.key_file, ": does not match the certificate ", options.cert_file));
    }
    return absl::InvalidArgumentError(
        SslErrorText(absl::StrCat("TLS key ", options.key_file, ": not usable")));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "TLS key ", options.key_file, ": does not match the certificate ", options.cert_file));
  }
  return std::shared_ptr<TransportFactory>(std::move(factory));
}

}  // namespace troupe
