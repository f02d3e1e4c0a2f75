// TROUPE_CHECK: aborts with a message when an invariant is broken.
//
// This Abseil release has no ABSL_CHECK, and invariants must hold in release
// builds too (an assert() would vanish), so the project carries its own.
//
//   TROUPE_CHECK(fd >= 0, "adopted a closed descriptor");
//
// Thread safety: thread-safe.
#pragma once

namespace troupe::internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* condition,
                              const char* message);
}  // namespace troupe::internal

#define TROUPE_CHECK(condition, message)                                        \
  do {                                                                          \
    if (__builtin_expect(!(condition), 0)) {                                    \
      ::troupe::internal::CheckFailed(__FILE__, __LINE__, #condition, message); \
    }                                                                           \
  } while (0)
