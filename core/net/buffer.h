// Buffer: a growable byte queue for one connection's input or output.
//
//   +----------------+--------------------+--------------------+
//   | consumed space |  readable bytes    |  writable space    |
//   +----------------+--------------------+--------------------+
//   0          read_index_          write_index_          capacity_
//
// Append() writes at write_index_; Consume() advances read_index_. When the
// tail is too small, Reserve() first slides the readable bytes to the front
// (if that makes room) and only then reallocates, doubling (after muduo's
// Buffer). Release() gives the memory back: an idle connection holds none.
//
//   Buffer out;
//   out.Append("hello");
//   ssize_t n = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
//   if (n > 0) out.Consume(n);     // partial sends are the normal case
//
// Thread safety: thread-compatible (owned by one connection, so one reactor).
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

namespace troupe {

class Buffer {
 public:
  Buffer() = default;
  // A moved-from Buffer is empty and usable (no storage, no capacity).
  Buffer(Buffer&& other) noexcept
      : storage_(std::move(other.storage_)),
        capacity_(std::exchange(other.capacity_, 0)),
        read_index_(std::exchange(other.read_index_, 0)),
        write_index_(std::exchange(other.write_index_, 0)) {}
  Buffer& operator=(Buffer&& other) noexcept {
    storage_ = std::move(other.storage_);
    capacity_ = std::exchange(other.capacity_, 0);
    read_index_ = std::exchange(other.read_index_, 0);
    write_index_ = std::exchange(other.write_index_, 0);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  size_t size() const { return write_index_ - read_index_; }
  bool empty() const { return write_index_ == read_index_; }
  size_t capacity() const { return capacity_; }
  const char* data() const { return storage_.get() + read_index_; }
  std::string_view view() const { return {data(), size()}; }

  void Append(std::string_view bytes) {
    if (bytes.empty()) return;
    Reserve(bytes.size());
    std::memcpy(storage_.get() + write_index_, bytes.data(), bytes.size());
    write_index_ += bytes.size();
  }

  // Drops the first `n` readable bytes (n <= size()).
  void Consume(size_t n);
  void Clear() { read_index_ = write_index_ = 0; }

  // Makes room for at least `n` more bytes at the tail.
  void Reserve(size_t n) {
    if (capacity_ - write_index_ < n) MakeRoom(n);
  }
  // The tail, for a read() straight into the buffer; then Commit() what arrived.
  char* writable_data() { return storage_.get() + write_index_; }
  size_t writable_size() const { return capacity_ - write_index_; }
  void Commit(size_t n) { write_index_ += n; }

  // Frees the storage; only valid when empty().
  void Release();

 private:
  void MakeRoom(size_t n);

  std::unique_ptr<char[]> storage_;
  size_t capacity_ = 0;
  size_t read_index_ = 0;
  size_t write_index_ = 0;
};

}  // namespace troupe
