#include "core/net/buffer.h"

#include <algorithm>

#include "core/base/check.h"

namespace troupe {
namespace {
// Smallest allocation: one typical small message plus headroom.
constexpr size_t kMinCapacity = 1024;
}  // namespace

void Buffer::Consume(size_t n) {
  TROUPE_CHECK(n <= size(), "Buffer::Consume past the readable bytes");
  read_index_ += n;
  // Rewinding an empty buffer keeps the whole capacity writable for free.
  if (read_index_ == write_index_) read_index_ = write_index_ = 0;
}

void Buffer::Release() {
  TROUPE_CHECK(empty(), "Buffer::Release with unread bytes");
  storage_.reset();
  capacity_ = read_index_ = write_index_ = 0;
}

void Buffer::MakeRoom(size_t n) {
  const size_t readable = size();
  if (capacity_ - readable >= n && readable <= capacity_ / 2) {
    // Sliding is cheaper than growing when the live bytes are at most half
    // the buffer (otherwise we would memmove large blocks again and again).
    std::memmove(storage_.get(), storage_.get() + read_index_, readable);
  } else {
    const size_t wanted = std::max({kMinCapacity, capacity_ * 2, readable + n});
    // new char[] leaves the bytes uninitialised: no cost for zero-filling.
    std::unique_ptr<char[]> grown(new char[wanted]);
    if (readable > 0) std::memcpy(grown.get(), storage_.get() + read_index_, readable);
    storage_ = std::move(grown);
    capacity_ = wanted;
  }
  read_index_ = 0;
  write_index_ = readable;
}

}  // namespace troupe
