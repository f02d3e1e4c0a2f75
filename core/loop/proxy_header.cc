#include "core/loop/proxy_header.h"

#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>

#include "core/base/check.h"
#include "core/base/log.h"
#include "core/net/proxy_protocol.h"

namespace troupe {
namespace {

// Closes `conn` over its header. One call site for every kind of bad header,
// so that together they log at most one line a second: a misconfigured
// client fleet (talking straight to a port that expects a proxy) must not
// flood the log.
void Log(const Connection& conn, CloseReason reason, const char* why) {
  TROUPE_LOG_EVERY_SECOND(kWarning, "closing %s: %s (%s)", conn.peer().ToString(), why,
                          CloseReasonName(reason));
}

void Reject(Connection& conn, CloseReason reason, const char* why) {
  Log(conn, reason, why);
  conn.Close(reason);
}

class ProxyHeaderHandler final : public ConnectionHandler {
 public:
  ProxyHeaderHandler(std::shared_ptr<const HandlerFactory> factory, absl::Duration timeout)
      : factory_(std::move(factory)), timeout_(timeout) {}

  void OnOpen(Connection& conn) override {
    // The connection's own deadline slot: no timer of our own, nothing left
    // behind when the header comes or the connection closes.
    conn.SetOpeningDeadline(timeout_, CloseReason::kProxyHeaderTimeout);
  }

  size_t OnData(Connection& conn, std::string_view data) override {
    if (inner_ != nullptr) return inner_->OnData(conn, data);
    // Consuming nothing keeps every byte so far in the connection's input,
    // so each call parses the header from its start: the parser's answers
    // are monotone, and a call is cheap (a v1 line is at most 107 bytes; v2
    // reads its 16 fixed bytes until the rest has come).
    seen_ = data.size();
    const ProxyHeaderResult header = ParseProxyHeader(data);
    if (header.need_more()) return 0;
    if (header.invalid()) {
      Reject(conn, CloseReason::kProxyHeaderInvalid, header.error);
      return 0;
    }
    conn.ClearOpeningDeadline();
    if (header.source.has_value()) conn.set_peer_in_loop(*header.source);
    inner_ = (*factory_)(conn);
    TROUPE_CHECK(inner_ != nullptr, "HandlerFactory returned null");
    inner_->OnOpen(conn);
    // The bytes that came with the header go on only as the connection
    // itself would hand them over: not once the handler closed or began
    // closing, paused reading, or owes all the work it may. They wait in the
    // input buffer for ResumeReading or FinishPendingWork (or die with the
    // connection).
    const std::string_view rest = data.substr(header.size);
    if (rest.empty() || conn.closing() || conn.reading_paused() || conn.work_full()) {
      return header.size;
    }
    return header.size + inner_->OnData(conn, rest);
  }

  void OnMail(Connection& conn, Mail mail) override {
    // Before the header, dropped (and counted): no actor exists yet that
    // anyone could have meant.
    if (inner_ != nullptr) {
      inner_->OnMail(conn, std::move(mail));
    } else {
      conn.reactor().CountMailDropInLoop(MailDrop::kGone);
    }
  }

  void OnPeerClosed(Connection& conn) override {
    if (inner_ != nullptr) {
      inner_->OnPeerClosed(conn);
    } else if (seen_ == 0) {
      // Connected and closed without a byte: a plain TCP health check, not
      // a bad header.
      ConnectionHandler::OnPeerClosed(conn);
    } else {
      Reject(conn, CloseReason::kProxyHeaderInvalid, "closed inside its PROXY protocol header");
    }
  }

  void OnOutputDrained(Connection& conn) override {
    if (inner_ != nullptr) inner_->OnOutputDrained(conn);
  }

  void OnClose(Connection& conn, CloseReason reason) override {
    // Only a handler that had OnOpen gets OnClose.
    if (inner_ != nullptr) {
      inner_->OnClose(conn, reason);
    } else if (reason == CloseReason::kProxyHeaderTimeout) {
      Log(conn, reason, "no complete PROXY protocol header in time");
    }
  }

  size_t input_limit() const override {
    return inner_ != nullptr ? inner_->input_limit() : kProxyHeaderMaxBytes;
  }

 private:
  const std::shared_ptr<const HandlerFactory> factory_;
  const absl::Duration timeout_;
  std::unique_ptr<ConnectionHandler> inner_;  // from the header on
  size_t seen_ = 0;                           // header bytes received so far
};

}  // namespace

HandlerFactory WithProxyHeader(HandlerFactory inner, absl::Duration timeout) {
  TROUPE_CHECK(inner != nullptr, "WithProxyHeader needs a factory");
  TROUPE_CHECK(timeout > absl::ZeroDuration(), "the PROXY header timeout must be > 0");
  auto factory = std::make_shared<const HandlerFactory>(std::move(inner));
  return [factory, timeout](Connection&) -> std::unique_ptr<ConnectionHandler> {
    return std::make_unique<ProxyHeaderHandler>(factory, timeout);
  };
}

}  // namespace troupe
