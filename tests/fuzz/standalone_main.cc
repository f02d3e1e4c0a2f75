// A stand-in for libFuzzer's main: runs LLVMFuzzerTestOneInput once on every
// file named on the command line, or in a directory named there (sorted, not
// recursive). It lets `make test` replay each fuzz corpus as a regression
// test with g++, without clang.
//
//   codec_fuzzer_replay tests/fuzz/corpus/codec
//
// Exits 0 when every input ran (a broken invariant aborts, failing the
// test); 1 when a file could not be read or there was nothing to run, so a
// wrong corpus path cannot pass.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

bool RunFile(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    return false;
  }
  const std::vector<char> bytes((std::istreambuf_iterator<char>(file)),
                                std::istreambuf_iterator<char>());
  // A copy of exactly `size` bytes, as libFuzzer hands over: a read past
  // the end is an ASan error in the sanitizer trees.
  std::vector<uint8_t> input(bytes.begin(), bytes.end());
  LLVMFuzzerTestOneInput(input.data(), input.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  size_t ran = 0;
  size_t unreadable = 0;
  auto run = [&](const std::filesystem::path& path) {
    if (RunFile(path)) {
      ++ran;
    } else {
      ++unreadable;
    }
  };
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path arg(argv[i]);
    std::error_code error;
    if (std::filesystem::is_directory(arg, error)) {
      std::vector<std::filesystem::path> files;
      for (const auto& entry : std::filesystem::directory_iterator(arg, error)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());
      for (const auto& f : files) run(f);
    } else {
      run(arg);
    }
  }
  std::printf("%s: ran %zu inputs\n", argc > 0 ? argv[0] : "replay", ran);
  return ran > 0 && unreadable == 0 ? 0 : 1;
}
