// Reads a process's resource use from /proc, for fault tests that check a
// server stays bounded (memory) or quiet (CPU).
//
//   int64_t rss = ResidentKiB(pid);   // VmRSS
//   double cpu = CpuSeconds(pid);     // utime + stime
//
// Thread safety: thread-safe.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace troupe::testing {

// VmRSS in KiB, or -1.
inline int64_t ResidentKiB(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// User + system CPU seconds, or -1.
inline double CpuSeconds(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // Fields after the ")" that closes the command name: state is field 3,
  // utime field 14, stime field 15.
  const size_t close = content.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(content.substr(close + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace troupe::testing
