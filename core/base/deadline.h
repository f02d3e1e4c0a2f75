// Saturating deadlines on the steady clock.
//
// absl::Duration can be infinite ("--idle-timeout=inf") and std::chrono's
// time_point + duration silently wraps when the sum passes the clock's range:
// a naive `now + ToChronoNanoseconds(inf)` lands in the past and closes every
// connection at once. Every deadline in the library goes through DeadlineAfter,
// which saturates at Clock::time_point::max(), meaning "never".
//
//   const auto when = DeadlineAfter(now, absl::InfiniteDuration());
//   assert(when == std::chrono::steady_clock::time_point::max());
//
// Thread safety: thread-safe (pure functions).
#pragma once

#include <chrono>

#include "absl/time/time.h"

namespace troupe {

using SteadyClock = std::chrono::steady_clock;

// `now + d`, where a negative `d` counts as zero and a sum beyond the clock's
// range (an infinite `d` included) is time_point::max().
inline SteadyClock::time_point DeadlineAfter(SteadyClock::time_point now, absl::Duration d) {
  if (d <= absl::ZeroDuration()) return now;
  const SteadyClock::duration room = SteadyClock::time_point::max() - now;
  if (d >= absl::FromChrono(room)) return SteadyClock::time_point::max();
  return now + std::chrono::duration_cast<SteadyClock::duration>(absl::ToChronoNanoseconds(d));
}

// True for a duration that is set and finite: zero, negative and infinite
// timeouts mean "off" wherever a timeout is optional.
inline bool IsFiniteTimeout(absl::Duration d) {
  return d > absl::ZeroDuration() && d != absl::InfiniteDuration();
}

}  // namespace troupe
