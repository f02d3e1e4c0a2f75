// Replaces the global operator new/delete with versions that count every
// allocation on every thread (one relaxed atomic add each), for a test or a
// benchmark that asserts or reports allocations per operation.
//
//   #include "tests/support/counting_new.h"   // in exactly one file of a binary
//   troupe::testing::CountAllocations(true);
//   uint64_t before = troupe::testing::Allocations(); ...
//
// Including it replaces the operators for the whole binary.
//
// Thread safety: the counters are atomics; any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace troupe {
namespace testing {

inline std::atomic<bool> g_counting{false};
inline std::atomic<uint64_t> g_allocations{0};

inline void CountAllocations(bool on) { g_counting.store(on, std::memory_order_relaxed); }
inline uint64_t Allocations() { return g_allocations.load(std::memory_order_relaxed); }

inline void* CountedAlloc(size_t n, size_t align = 0) {
  if (g_counting.load(std::memory_order_relaxed)) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
  }
  if (n == 0) n = 1;
  void* p = align > alignof(std::max_align_t)
                ? std::aligned_alloc(align, (n + align - 1) / align * align)
                : std::malloc(n);
  return p;
}

}  // namespace testing
}  // namespace troupe

// GCC sees malloc/free behind new/delete once these are inlined and warns
// about a mismatch that is exactly the point of the replacement.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(size_t n) {
  if (void* p = troupe::testing::CountedAlloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return troupe::testing::CountedAlloc(n);
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return troupe::testing::CountedAlloc(n);
}
void* operator new(size_t n, std::align_val_t a) {
  if (void* p = troupe::testing::CountedAlloc(n, static_cast<size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n, std::align_val_t a) { return operator new(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }
