#include "apps/cli.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "absl/flags/internal/program_name.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "core/base/string_view_compat.h"

#ifndef TROUPE_VERSION
#define TROUPE_VERSION "unknown"
#endif

namespace troupe::cli {
namespace {

std::atomic<bool> parsing{false};

void ExitTwoIfParsing() {
  if (parsing.load()) {
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(2);
  }
}

bool IsFlag(const char* arg, const char* name) {
  // Accept -name, --name and --name=...
  std::string_view a(arg);
  if (a.starts_with("--"))
    a.remove_prefix(2);
  else if (a.starts_with("-"))
    a.remove_prefix(1);
  else
    return false;
  return a == name;
}

}  // namespace

std::vector<char*> ParseFlagsOrExit(int argc, char* argv[], std::string_view usage) {
  const std::string program = argc > 0 ? argv[0] : "troupe";
  absl::flags_internal::SetProgramInvocationName(argc > 0 ? argv[0] : "troupe");
  absl::SetProgramUsageMessage(AsAbsl(usage));
  absl::FlagsUsageConfig config;
  config.version_string = [] { return std::string(TROUPE_VERSION) + "\n"; };
  // --help lists the flags defined in apps/ only, not Abseil's internals.
  config.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "apps/");
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  config.normalize_filename = [](absl::string_view file) {
    const size_t at = file.rfind("apps/");
    return std::string(at == absl::string_view::npos ? file : file.substr(at));
  };
  absl::SetFlagsUsageConfig(config);

  // Flag names are C identifiers for Abseil; accept the dashed spelling too
  // (--idle-timeout == --idle_timeout). Only the name part is rewritten.
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) break;
    if (argv[i][0] != '-') continue;
    char* name = argv[i] + (argv[i][1] == '-' ? 2 : 1);
    for (char* c = name; *c != '\0' && *c != '='; ++c) {
      if (*c == '-') *c = '_';
    }
  }
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) break;
    if (IsFlag(argv[i], "version")) {
      std::printf("%s %s\n", program.substr(program.rfind('/') + 1).c_str(), TROUPE_VERSION);
      std::exit(0);
    }
    if (IsFlag(argv[i], "help") || IsFlag(argv[i], "h") || IsFlag(argv[i], "helpfull")) {
      // Abseil's own --help exits 1; help asked for is a success here.
      absl::flags_internal::FlagsHelp(std::cout, "apps/",
                                      absl::flags_internal::HelpFormat::kHumanReadable,
                                      absl::ProgramUsageMessage());
      std::cout.flush();
      std::exit(0);
    }
  }
  std::atexit(ExitTwoIfParsing);
  parsing.store(true);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  parsing.store(false);
  return positional;
}

void UsageError(std::string_view program, std::string_view message) {
  std::string name(program);
  name = name.substr(name.rfind('/') + 1);
  std::fprintf(stderr, "%s: %.*s\n", name.c_str(), static_cast<int>(message.size()),
               message.data());
  std::fprintf(stderr, "Try '%s --help' for the flags.\n", name.c_str());
  std::exit(2);
}

}  // namespace troupe::cli
