// Buffer Append/Consume and Codec::Parse: the per-message work a connection
// does besides its syscalls.
#include <cstdint>
#include <string>

#include "actors/codec.h"
#include "benchmark/benchmark.h"
#include "core/net/buffer.h"

namespace troupe {
namespace {

// Append n bytes, consume them all: the output buffer under a partial write
// that later drains (the buffer stays allocated; rewinding is free).
void BM_BufferAppendConsume(benchmark::State& state) {
  const std::string bytes(static_cast<size_t>(state.range(0)), 'x');
  Buffer buffer;
  for (auto _ : state) {
    buffer.Append(bytes);
    buffer.Consume(buffer.size());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_BufferAppendConsume)->Arg(64)->Arg(4096)->Arg(16384);

// Append n, consume 3/4 of what is readable: bytes pile up and the buffer
// slides them to the front now and then (a partial frame growing).
void BM_BufferAppendConsumePartial(benchmark::State& state) {
  const std::string bytes(static_cast<size_t>(state.range(0)), 'x');
  Buffer buffer;
  for (auto _ : state) {
    buffer.Append(bytes);
    buffer.Consume(buffer.size() * 3 / 4);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_BufferAppendConsumePartial)->Arg(64)->Arg(4096);

// 64 KiB (one scratch read) of messages with `size`-byte payloads.
std::string MakeLines(size_t size) {
  std::string out;
  while (out.size() + size + 1 <= 64 * 1024) out.append(size, 'a').push_back('\n');
  return out;
}
std::string MakeFrames(size_t size) {
  std::string out;
  while (out.size() + size + 4 <= 64 * 1024) {
    const uint32_t n = static_cast<uint32_t>(size);
    const char header[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                            static_cast<char>(n >> 8), static_cast<char>(n)};
    out.append(header, 4).append(size, 'a');
  }
  return out;
}

void ParseBench(benchmark::State& state, CodecKind kind, const std::string& data) {
  const Codec codec({.kind = kind});
  size_t messages = 0;
  for (auto _ : state) {
    size_t n = 0;
    auto used = codec.Parse(data, [&](std::string_view m) {
      benchmark::DoNotOptimize(m.data());
      ++n;
      return true;
    });
    benchmark::DoNotOptimize(used);
    messages = n;
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(data.size()));
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(messages));
  state.counters["ns_per_msg"] = benchmark::Counter(
      static_cast<double>(messages),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_CodecParseLines(benchmark::State& state) {
  ParseBench(state, CodecKind::kLines, MakeLines(static_cast<size_t>(state.range(0))));
}
BENCHMARK(BM_CodecParseLines)->Arg(63)->Arg(1023);

void BM_CodecParseLength(benchmark::State& state) {
  ParseBench(state, CodecKind::kLength, MakeFrames(static_cast<size_t>(state.range(0))));
}
BENCHMARK(BM_CodecParseLength)->Arg(60)->Arg(1020);

}  // namespace
}  // namespace troupe
