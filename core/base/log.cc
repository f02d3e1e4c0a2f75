#include "core/base/log.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/base/string_view_compat.h"

namespace troupe {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
thread_local int t_reactor = -1;
}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warning") return LogLevel::kWarning;
  if (name == "error") return LogLevel::kError;
  if (name == "off") return LogLevel::kOff;
  return absl::InvalidArgumentError(absl::StrCat("unknown log level '", AsAbsl(name),
                                                 "' (known: debug, info, warning, error, off)"));
}

void SetLogThreadReactor(int index) { t_reactor = index; }

void LogLine(LogLevel level, std::string_view message) {
  static constexpr char kLetters[] = "DIWE";
  const int l = static_cast<int>(level);
  std::string line = absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ ", absl::Now(), absl::UTCTimeZone());
  line.push_back(l >= 0 && l < 4 ? kLetters[l] : '?');
  if (t_reactor >= 0) absl::StrAppend(&line, " reactor=", t_reactor);
  line.push_back(' ');
  line.append(message);
  line.push_back('\n');
  // One write per line: concurrent lines never interleave mid-line.
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

namespace internal {
bool EverySecond::Admit(uint64_t& suppressed) {
  const int64_t now = absl::GetCurrentTimeNanos();
  int64_t next = next_ns_.load(std::memory_order_relaxed);
  if (now < next || !next_ns_.compare_exchange_strong(next, now + 1'000'000'000)) {
    held_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  suppressed = held_.exchange(0, std::memory_order_relaxed);
  return true;
}
}  // namespace internal

}  // namespace troupe
