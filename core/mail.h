// Mail: one message for a connection's handler, sent from any thread.
//
// A move-only box that holds any movable value; the receiver asks for the
// type it expects. Mail travels through the owning reactor's inbox and is
// delivered on that reactor, so the value needs no synchronisation of its own.
//
//   Mail m = Mail::Of(std::string("hello"));
//   if (const std::string* text = m.As<std::string>()) Use(*text);
//
// Thread safety: thread-compatible (moved between threads, never shared).
#pragma once

#include <memory>
#include <typeinfo>
#include <utility>

namespace troupe {

class Mail {
 public:
  Mail() = default;
  Mail(Mail&&) noexcept = default;
  Mail& operator=(Mail&&) noexcept = default;

  template <typename T>
  static Mail Of(T value) {
    Mail mail;
    mail.box_ = std::make_unique<Holder<T>>(std::move(value));
    return mail;
  }

  bool empty() const { return box_ == nullptr; }
  template <typename T>
  bool Is() const {
    return box_ != nullptr && box_->type() == typeid(T);
  }
  // The held value if it is a T, else nullptr.
  template <typename T>
  T* As() {
    return Is<T>() ? &static_cast<Holder<T>*>(box_.get())->value : nullptr;
  }
  template <typename T>
  const T* As() const {
    return Is<T>() ? &static_cast<const Holder<T>*>(box_.get())->value : nullptr;
  }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual const std::type_info& type() const = 0;
  };
  template <typename T>
  struct Holder final : Base {
    explicit Holder(T v) : value(std::move(v)) {}
    const std::type_info& type() const override { return typeid(T); }
    T value;
  };

  std::unique_ptr<Base> box_;
};

}  // namespace troupe
