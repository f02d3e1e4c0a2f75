// Fuzz target for Buffer (core/net/buffer.h), checked against a std::string model.
//
// The input is a stream of operations; each is one opcode byte and its
// arguments, read while bytes remain:
//
//   op % 6 == 0  Append      n = next byte; the next n input bytes
//   op % 6 == 1  Consume     k = next two bytes, modulo size() + 1
//   op % 6 == 2  Reserve     n = next two bytes; then write m = next byte
//                            (capped at writable_size()) bytes and Commit(m)
//   op % 6 == 3  Release     only when empty(), as the contract requires;
//                            otherwise Consume everything first
//   op % 6 == 4  Clear
//   op % 6 == 5  move the Buffer out and back
//
// After every operation the readable bytes equal the model, and capacity is
// bounded: it never exceeds max(1 KiB, 4 x the most bytes ever needed at once)
// since the last Release (MakeRoom doubles, or fits exactly; memory stays
// bounded, the "memory bounded" invariant of docs/architecture.md).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "core/base/check.h"
#include "core/net/buffer.h"

namespace {

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  size_t Short() { return size_t{Byte()} << 8 | Byte(); }
  std::string_view Bytes(size_t n) {
    n = std::min(n, size_ - pos_);
    std::string_view s(reinterpret_cast<const char*>(data_) + pos_, n);
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  using troupe::Buffer;
  Reader in(bytes, size);
  Buffer buffer;
  std::string model;
  size_t peak = 0;  // most bytes needed at once since the last Release
  uint8_t fill = 0;

  while (!in.done()) {
    switch (in.Byte() % 6) {
      case 0: {
        const std::string_view piece = in.Bytes(in.Byte());
        peak = std::max(peak, model.size() + piece.size());
        buffer.Append(piece);
        model.append(piece);
        break;
      }
      case 1: {
        const size_t k = in.Short() % (model.size() + 1);
        buffer.Consume(k);
        model.erase(0, k);
        if (model.empty()) {
          TROUPE_CHECK(buffer.writable_size() == buffer.capacity(),
                       "an emptied buffer did not rewind");
        }
        break;
      }
      case 2: {
        const size_t n = in.Short();
        peak = std::max(peak, model.size() + n);
        buffer.Reserve(n);
        TROUPE_CHECK(buffer.writable_size() >= n, "Reserve left too little room");
        TROUPE_CHECK(buffer.view() == model, "Reserve changed the readable bytes");
        const size_t m = std::min<size_t>(in.Byte(), buffer.writable_size());
        char* tail = buffer.writable_data();
        std::string written;
        for (size_t i = 0; i < m; ++i) written.push_back(static_cast<char>(fill++));
        if (m > 0) std::memcpy(tail, written.data(), m);
        buffer.Commit(m);
        model.append(written);
        break;
      }
      case 3:
        if (!buffer.empty()) {
          buffer.Consume(buffer.size());
          model.clear();
        }
        buffer.Release();
        TROUPE_CHECK(buffer.capacity() == 0, "Release kept memory");
        TROUPE_CHECK(buffer.writable_size() == 0, "Release left writable space");
        peak = 0;
        break;
      case 4:
        buffer.Clear();
        model.clear();
        TROUPE_CHECK(buffer.writable_size() == buffer.capacity(), "Clear did not rewind");
        break;
      case 5: {
        Buffer moved(std::move(buffer));
        buffer = std::move(moved);
        break;
      }
    }
    TROUPE_CHECK(buffer.size() == model.size(), "size differs from the model");
    TROUPE_CHECK(buffer.empty() == model.empty(), "empty() differs from the model");
    TROUPE_CHECK(buffer.view() == model, "bytes differ from the model");
    TROUPE_CHECK(buffer.size() + buffer.writable_size() <= buffer.capacity(),
                 "readable + writable exceed capacity");
    TROUPE_CHECK(buffer.capacity() <= std::max<size_t>(1024, 4 * peak),
                 "capacity grew beyond the bound");
  }
  return 0;
}
