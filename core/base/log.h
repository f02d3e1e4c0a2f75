// Log: one line per event worth a human's attention, on stderr.
//
//   2026-11-23T12:00:00.123456Z W reactor=3 accept: Too many open files; shedding
//
// Lines carry a UTC timestamp, a level letter and, on a reactor thread, the
// reactor's index. TROUPE_LOG formats only when the level is enabled;
// TROUPE_LOG_EVERY_SECOND lets at most one line per second through from one
// call site, for events that can come in storms (resets, limits, exhaustion),
// and says how many it held back.
//
//   TROUPE_LOG(kInfo, "listening on %s", address.ToString());
//   TROUPE_LOG_EVERY_SECOND(kWarning, "closing %s: %s", peer, reason);
//
// Thread safety: thread-safe (one write(2) per line, so lines never interleave).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"

namespace troupe {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kOff = 4 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
inline bool LogEnabled(LogLevel level) { return level >= GetLogLevel(); }
// "debug", "info", "warning", "error", "off".
absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name);

// Writes one line (a newline is added).
void LogLine(LogLevel level, std::string_view message);

// Marks the calling thread as reactor `index` in its log lines (-1: none).
void SetLogThreadReactor(int index);

namespace internal {
// Admits one event per second; counts the rest.
class EverySecond {
 public:
  // True if this event may be logged; `suppressed` gets how many were held
  // back since the last admitted one.
  bool Admit(uint64_t& suppressed);

 private:
  std::atomic<int64_t> next_ns_{0};
  std::atomic<uint64_t> held_{0};
};
}  // namespace internal

}  // namespace troupe

#define TROUPE_LOG(level, ...)                                                    \
  do {                                                                            \
    if (::troupe::LogEnabled(::troupe::LogLevel::level)) {                        \
      ::troupe::LogLine(::troupe::LogLevel::level, absl::StrFormat(__VA_ARGS__)); \
    }                                                                             \
  } while (0)

#define TROUPE_LOG_EVERY_SECOND(level, ...)                                              \
  do {                                                                                   \
    static ::troupe::internal::EverySecond troupe_every_second_;                         \
    uint64_t troupe_held_ = 0;                                                           \
    if (::troupe::LogEnabled(::troupe::LogLevel::level) &&                               \
        troupe_every_second_.Admit(troupe_held_)) {                                      \
      std::string troupe_line_ = absl::StrFormat(__VA_ARGS__);                           \
      if (troupe_held_ > 0) {                                                            \
        troupe_line_ += absl::StrFormat(" (%d similar lines suppressed)", troupe_held_); \
      }                                                                                  \
      ::troupe::LogLine(::troupe::LogLevel::level, troupe_line_);                        \
    }                                                                                    \
  } while (0)
