// ValidateLoadOptions, declared in load_client.h: what a run may be asked to
// do, checked before anything touches the network.
#include <cmath>
#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "load/framing.h"
#include "load/load_client.h"

namespace troupe {
namespace {

// Guards against typos that would allocate gigabytes of send-time rings.
constexpr int kMaxPipeline = 1 << 16;
constexpr size_t kMaxMessageSize = size_t{1} << 30;

absl::Status Positive(absl::string_view what, absl::Duration d) {
  if (d > absl::ZeroDuration()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " must be positive, got ", absl::FormatDuration(d)));
}

absl::Status NotNegative(absl::string_view what, absl::Duration d) {
  if (d >= absl::ZeroDuration()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " must not be negative, got ", absl::FormatDuration(d)));
}

// LoadOptions::framing and LoadOptions::churn, and what they exclude.
absl::Status ValidateFramingAndChurn(const LoadOptions& options) {
  if (options.framing != LoadFraming::kRaw) {
    const char* name = LoadFramingName(options.framing);
    if (!options.messages.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          name,
          " framing does not apply to a message list (script mode): its messages are sent "
          "as given"));
    }
    const size_t min = MinFramedMessageSize(options.framing);
    if (options.message_size < min) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " framing needs a message size of ", min, " bytes at least (",
          options.framing == LoadFraming::kLines ? "a byte of text and its \"\\n\""
                                                 : "the 4-byte length and a byte of payload",
          "), got ", options.message_size));
    }
    if (options.message_size > kMaxFramedMessageSize) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " framing: message size must be at most ", kMaxFramedMessageSize,
                       " bytes, got ", options.message_size));
    }
  }
  if (!options.churn) {
    if (options.churn_close != LoadOptions::ChurnClose::kFin) {
      return absl::InvalidArgumentError("a churn close (reset) needs churn");
    }
    return absl::OkStatus();
  }
  if (!options.messages.empty()) {
    return absl::InvalidArgumentError("churn does not apply to a message list (script mode)");
  }
  if (options.rate > 0) {
    return absl::InvalidArgumentError(
        "churn runs its cycles as fast as it can: it has no fixed rate");
  }
  if (options.reconnect) {
    return absl::InvalidArgumentError(
        "churn connects again every cycle: reconnect does not apply to it");
  }
  if (options.tls) {
    return absl::InvalidArgumentError("churn does not speak TLS (yet)");
  }
  if (options.pipeline != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "churn sends one message per connection: pipeline must be 1, got ", options.pipeline));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateLoadOptions(const LoadOptions& options) {
  if (options.target.length() == 0) {
    return absl::InvalidArgumentError("no target address");
  }
  if (options.target.port() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("target ", options.target.ToString(), ": port must be 1..65535"));
  }
  if (options.connections < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("connections must be at least 1, got ", options.connections));
  }
  if (options.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("threads must be 0 (automatic) or more, got ", options.threads));
  }
  if (options.message_size < 1 || options.message_size > kMaxMessageSize) {
    return absl::InvalidArgumentError(absl::StrCat("message size must be 1..", kMaxMessageSize,
                                                   " bytes, got ", options.message_size));
  }
  if (options.pipeline < 1 || options.pipeline > kMaxPipeline) {
    return absl::InvalidArgumentError(
        absl::StrCat("pipeline must be 1..", kMaxPipeline, ", got ", options.pipeline));
  }
  if (absl::Status s = Positive("duration", options.duration); !s.ok()) {
    return s;
  }
  if (absl::Status s = NotNegative("warmup", options.warmup); !s.ok()) {
    return s;
  }
  if (absl::Status s = Positive("connect timeout", options.connect_timeout); !s.ok()) {
    return s;
  }
  // `!(x >= 0)` also catches NaN.
  if (!(options.rate >= 0) || std::isinf(options.rate)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rate must be 0 (closed loop) or a positive number, got ", options.rate));
  }
  if (!options.messages.empty()) {
    if (options.rate > 0) {
      return absl::InvalidArgumentError(
          "a message list (script mode) cannot be sent at a fixed rate");
    }
    size_t total = 0;
    for (size_t i = 0; i < options.messages.size(); ++i) {
      if (options.messages[i].empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("message ", i + 1, " is empty: an empty message has no echo"));
      }
      total += options.messages[i].size();
    }
    if (total > kMaxMessageSize) {
      return absl::InvalidArgumentError(
          absl::StrCat("the messages add up to ", total, " bytes; at most ", kMaxMessageSize));
    }
    if (absl::Status s = Positive("script timeout", options.script_timeout); !s.ok()) {
      return s;
    }
    // A script is sent once: after a reconnect its messages would either
    // be sent twice or be lost, and neither is the script.
    if (options.reconnect) {
      return absl::InvalidArgumentError(
          "reconnect does not apply to a message list (script mode), which is sent once");
    }
  }
  if (absl::Status s = ValidateFramingAndChurn(options); !s.ok()) return s;
  if (options.tls) {
    if (options.tls_insecure == !options.tls_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "TLS needs exactly one of a CA file to verify the server against and insecure "
          "(no verification)");
    }
  } else if (options.tls_insecure || !options.tls_ca_file.empty() ||
             !options.tls_server_name.empty()) {
    return absl::InvalidArgumentError("a TLS CA file, server name or insecure needs TLS");
  }
  if (options.source_addresses < 0 || options.source_addresses > 65534) {
    return absl::InvalidArgumentError(absl::StrCat(
        "source addresses must be 0 (automatic) or 1..65534, got ", options.source_addresses));
  }
  if (absl::Status s = NotNegative("progress interval", options.progress_interval); !s.ok()) {
    return s;
  }
  return NotNegative("stall timeout", options.stall_timeout);
}

}  // namespace troupe
