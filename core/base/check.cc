#include "core/base/check.h"

#include <cstdio>
#include <cstdlib>

namespace troupe::internal {

void CheckFailed(const char* file, int line, const char* condition, const char* message) {
  std::fprintf(stderr, "troupe: check failed at %s:%d: %s (%s)\n", file, line, condition, message);
  std::fflush(stderr);
  std::abort();
}

}  // namespace troupe::internal
