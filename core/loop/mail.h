// Mail: one message for a connection's handler, sent from any thread.
//
// A move-only box that holds any movable value, or shares one immutable value
// among many receivers (a broadcast); the receiver asks for the type it
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
// A request (the actor layer's Ask) carries a return address: where the
// answer goes, and the asker's tag for it. If the request is dropped on its
// way (the target is gone, its mailbox is full), the reactor that drops it
// sends Bounced{...} (core/loop/mailbox.h) back there, so the asker hears at
// once instead of at its timeout.
//
// Thread safety: thread-compatible (moved between threads, never shared; a
// shared value is immutable).
#pragma once

#include <cstdint>
#include <memory>
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
  Mail() = default;
  Mail(Mail&&) noexcept = default;
  Mail& operator=(Mail&&) noexcept = default;

  // A box that owns `value`.
  template <typename T>
  static Mail Of(T value) {
    Mail mail;
    mail.box_ = std::make_unique<Owned<T>>(std::move(value));
    return mail;
  }
  // A box that shares an immutable value (cheap to send to many receivers).
  template <typename T>
  static Mail Share(std::shared_ptr<const T> value) {
    Mail mail;
    mail.box_ = std::make_unique<Shared<T>>(std::move(value));
    return mail;
  }

  bool empty() const { return box_ == nullptr; }
  // The return address, kept in the box (so a Mail stays one pointer); an
  // empty Mail has none.
  void set_return_address(ReturnAddress address) {
    if (box_ != nullptr) box_->return_address = address;
  }
  ReturnAddress return_address() const {
    return box_ != nullptr ? box_->return_address : ReturnAddress{};
  }
  // True if the box holds (or shares) a T.
  template <typename T>
  bool Is() const {
    return box_ != nullptr && box_->type() == typeid(T);
  }
  // Read access to the T held or shared, else nullptr.
  template <typename T>
  const T* Get() const {
    return Is<T>() ? static_cast<const T*>(box_->get()) : nullptr;
  }
  // Write access to an owned T (to move it out), else nullptr; a shared
  // value is never writable.
  template <typename T>
  T* As() {
    return Is<T>() && !box_->shared() ? &static_cast<Owned<T>*>(box_.get())->value : nullptr;
  }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual const std::type_info& type() const = 0;
    virtual const void* get() const = 0;
    virtual bool shared() const = 0;
    ReturnAddress return_address;
  };
  template <typename T>
  struct Owned final : Base {
    explicit Owned(T v) : value(std::move(v)) {}
    const std::type_info& type() const override { return typeid(T); }
    const void* get() const override { return &value; }
    bool shared() const override { return false; }
    T value;
  };
  template <typename T>
  struct Shared final : Base {
    explicit Shared(std::shared_ptr<const T> v) : value(std::move(v)) {}
    const std::type_info& type() const override { return typeid(T); }
    const void* get() const override { return value.get(); }
    bool shared() const override { return true; }
    std::shared_ptr<const T> value;
  };

  std::unique_ptr<Base> box_;
};

}  // namespace troupe
