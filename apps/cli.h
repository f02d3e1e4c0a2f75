// Command-line conventions shared by troupe's programs:
//   - flags may be spelled with dashes or underscores: --max-line, --max_line;
//   - a bad flag or value is a usage error: message on stderr, exit status 2;
//   - --help prints the usage and every flag of the program with its default,
//     exit 0; --version prints the version, exit 0.
//
// Abseil's parser reports bad flags itself and then calls std::exit(1); while
// it runs, an atexit hook turns that into exit status 2.
//
// Thread safety: call once, from main, before any thread starts.
#pragma once

#include <string_view>
#include <vector>

namespace troupe::cli {

// Parses argv; returns the positional arguments (argv[0] first). Exits on
// --help, --version and usage errors.
std::vector<char*> ParseFlagsOrExit(int argc, char* argv[], std::string_view usage);

// Prints "program: message" to stderr and exits 2.
[[noreturn]] void UsageError(std::string_view program, std::string_view message);

}  // namespace troupe::cli
