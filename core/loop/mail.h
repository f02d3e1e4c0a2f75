// Mail: one message for a connection's handler, sent from any thread.
//
// A move-only holder of any movable value, or of a share of one immutable
// value among many receivers (a broadcast); the receiver asks for the type it
// expects. Mail travels through the owning reactor's inbox and is delivered on
// that reactor, so an owned value needs no synchronisation of its own.
//
//   Mail m = Mail::Of(std::string("hello"));
//   if (std::string* text = m.As<std::string>()) Use(std::move(*text));
//
//   auto shared = std::make_shared<const Note>(...);
//   Mail a = Mail::Share(shared), b = Mail::Share(shared);   // no copies
//   if (const Note* note = a.Get<Note>()) Read(*note);
//
// What it costs: a Mail is 80 bytes and holds its value in place when
//   sizeof(T) <= kInline (48) && alignof(T) <= alignof(std::max_align_t)
//   && std::is_nothrow_move_constructible_v<T>
// (integers, small structs, std::string, absl::Status, the actor layer's own
// mail), so Of() of such a value allocates nothing; a larger, over-aligned or
// throwing-move value goes to the heap, one allocation per Of(). Share() never
// allocates: the shared_ptr itself is held in place (a refcount increment per
// receiver). A move copies the value's bytes (trivially copyable values and
// heap ones) or calls its move constructor; there is no virtual call. The
// type test is a pointer compare, else a std::type_info compare (as
// std::any does), so a Mail of a type from another shared library still
// matches.
//
//   Mail (80 bytes)
//   ┌──────────────────────────────┬──────┬────────────────────┐
//   │ storage: T, T*, or           │ ops  │ return address     │
//   │ shared_ptr<const T> (48)     │ (8)  │ (24)               │
//   └──────────────────────────────┴──────┴────────────────────┘
//   ops: one static table per (T, where it is held): type, relocate,
//   destroy, get, shared. Null: the Mail is empty.
//
// A request (the actor layer's Ask) carries a return address: where the
// answer goes, and the asker's tag for it. If the request is dropped on its
// way (the target is gone, its mailbox is full), the reactor that drops it
// sends Bounced{...} (core/loop/mailbox.h) back there, so the asker hears at
// once instead of at its timeout.
//
// Thread safety: thread-compatible (moved between threads, never shared; a
// shared value is immutable, and its refcount is the shared_ptr's atomic one).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "core/loop/connection_id.h"

namespace troupe {

// Where the answer to a request goes: the asker, and its tag for the request.
struct ReturnAddress {
  ConnectionId to;   // invalid: no answer is expected
  uint64_t tag = 0;  // the asker's; opaque to the receiver
  bool valid() const { return to.valid(); }
};

class Mail {
 public:
  // Bytes of value held in place (see the header comment). 48: room for a
  // std::string (32), a shared_ptr (16) and the actor layer's largest mail,
  // its Continuation (an absl::AnyInvocable and three fields, 48), while a
  // Mail stays 80 bytes with its table and return address.
  static constexpr size_t kInline = 48;
  // True when Of(T) holds the value in place (no allocation).
  template <typename T>
  static constexpr bool kHeldInline =
      sizeof(T) <= kInline &&
      alignof(T) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<T>;

  Mail() = default;
  Mail(Mail&& other) noexcept { TakeFrom(other); }
  Mail& operator=(Mail&& other) noexcept {
    if (this != &other) {
      // Out of `other` first: it may live inside the value this Mail holds
      // (mail = std::move(mail.As<Envelope>()->inner)), which Reset ends.
      Mail taken(std::move(other));
      Reset();
      TakeFrom(taken);
    }
    return *this;
  }
  ~Mail() { Reset(); }

  // Mail that owns `value`: held in place when it fits, else on the heap.
  template <typename T>
  static Mail Of(T value) {
    static_assert(std::is_same_v<T, std::remove_cv_t<T>>, "Mail::Of of a const type");
    Mail mail;
    if constexpr (kHeldInline<T>) {
      ::new (static_cast<void*>(mail.storage_)) T(std::move(value));
    } else {
      ::new (static_cast<void*>(mail.storage_)) T*(new T(std::move(value)));
    }
    mail.ops_ = &kOwnedOps<T>;
    return mail;
  }
  // Mail that shares an immutable value (cheap to send to many receivers:
  // no allocation, one refcount increment).
  template <typename T>
  static Mail Share(std::shared_ptr<const T> value) {
    Mail mail;
    ::new (static_cast<void*>(mail.storage_)) std::shared_ptr<const T>(std::move(value));
    mail.ops_ = &kSharedOps<T>;
    return mail;
  }

  bool empty() const { return ops_ == nullptr; }
  // True if the value is shared (Share): readable by Get, never by As.
  bool shared() const { return ops_ != nullptr && ops_->shared; }
  // The return address travels with the value; an empty Mail has none.
  void set_return_address(ReturnAddress address) {
    if (ops_ != nullptr) return_address_ = address;
  }
  ReturnAddress return_address() const {
    return ops_ != nullptr ? return_address_ : ReturnAddress{};
  }
  // True if the Mail holds (or shares) a T.
  template <typename T>
  bool Is() const {
    if (ops_ == &kOwnedOps<T> || ops_ == &kSharedOps<T>) return true;
    // Another copy of the table (another shared library's): compare types.
    return ops_ != nullptr && *ops_->type == typeid(T);
  }
  // Read access to the T held or shared, else nullptr.
  template <typename T>
  const T* Get() const {
    return Is<T>() ? static_cast<const T*>(ops_->get(storage_)) : nullptr;
  }
  // Write access to an owned T (to move it out), else nullptr; a shared
  // value is never writable.
  template <typename T>
  T* As() {
    return Is<T>() && !ops_->shared ? static_cast<T*>(const_cast<void*>(ops_->get(storage_)))
                                    : nullptr;
  }

 private:
  // What a Mail knows of the value it holds: one constant table per type and
  // way of holding it, shared by every Mail of that kind.
  struct Ops {
    const std::type_info* type;
    // Moves the held value from one storage to another and ends it in the
    // first; null: copying the storage's bytes does that (a trivially
    // copyable value, or a pointer to a heap one).
    void (*relocate)(unsigned char* from, unsigned char* to) noexcept;
    void (*destroy)(unsigned char* storage) noexcept;  // null: nothing to do
    const void* (*get)(const unsigned char* storage) noexcept;
    bool shared;
  };

  template <typename T>
  static void RelocateInline(unsigned char* from, unsigned char* to) noexcept {
    T* value = std::launder(reinterpret_cast<T*>(from));
    ::new (static_cast<void*>(to)) T(std::move(*value));
    value->~T();
  }
  template <typename T>
  static void DestroyInline(unsigned char* storage) noexcept {
    std::launder(reinterpret_cast<T*>(storage))->~T();
  }
  template <typename T>
  static const void* GetInline(const unsigned char* storage) noexcept {
    return std::launder(reinterpret_cast<const T*>(storage));
  }
  template <typename T>
  static void DestroyHeap(unsigned char* storage) noexcept {
    delete *std::launder(reinterpret_cast<T**>(storage));
  }
  template <typename T>
  static const void* GetHeap(const unsigned char* storage) noexcept {
    return *std::launder(reinterpret_cast<T* const*>(storage));
  }
  template <typename T>
  static const void* GetShared(const unsigned char* storage) noexcept {
    return std::launder(reinterpret_cast<const std::shared_ptr<const T>*>(storage))->get();
  }

  template <typename T>
  static constexpr Ops OwnedOpsFor() {
    if constexpr (!kHeldInline<T>) {
      return Ops{&typeid(T), nullptr, &DestroyHeap<T>, &GetHeap<T>, false};
    } else if constexpr (std::is_trivially_copyable_v<T>) {
      return Ops{&typeid(T), nullptr, nullptr, &GetInline<T>, false};
    } else {
      return Ops{&typeid(T), &RelocateInline<T>, &DestroyInline<T>, &GetInline<T>, false};
    }
  }
  template <typename T>
  static constexpr Ops kOwnedOps = OwnedOpsFor<T>();
  // A shared_ptr is two pointers and nothing that points into itself, so
  // copying its bytes moves it (it is trivially relocatable in libstdc++ and
  // libc++ alike): a broadcast's Mail moves without a call.
  static_assert(sizeof(std::shared_ptr<const int>) == 2 * sizeof(void*));
  template <typename T>
  static constexpr Ops kSharedOps{&typeid(T), nullptr, &DestroyInline<std::shared_ptr<const T>>,
                                  &GetShared<T>, true};

  // Requires this Mail to be empty; leaves `other` empty.
  void TakeFrom(Mail& other) noexcept {
    if (other.ops_ == nullptr) return;
    if (other.ops_->relocate == nullptr) {
      std::memcpy(storage_, other.storage_, kInline);
    } else {
      other.ops_->relocate(other.storage_, storage_);
    }
    ops_ = other.ops_;
    return_address_ = other.return_address_;
    other.ops_ = nullptr;
  }
  void Reset() noexcept {
    if (ops_ == nullptr) return;
    if (ops_->destroy != nullptr) ops_->destroy(storage_);
    ops_ = nullptr;
  }

  alignas(std::max_align_t) unsigned char storage_[kInline];
  const Ops* ops_ = nullptr;  // null: empty
  ReturnAddress return_address_;
};

}  // namespace troupe
