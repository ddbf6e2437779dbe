// Errors are values: every fallible call returns Status or Result<T>, with a
// message that carries its context (file, tensor, field, sequence, request).
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace ferrum {

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status error(std::string msg) {
    Status s;
    s.ok_ = false;
    s.msg_ = std::move(msg);
    return s;
  }
  bool ok() const { return ok_; }
  const std::string& message() const { return msg_; }
  // Prepends context ("file.gguf: " + message) as an error travels upwards.
  Status with_context(const std::string& ctx) const {
    if (ok_) return *this;
    return error(ctx + ": " + msg_);
  }

 private:
  bool ok_ = true;
  std::string msg_;
};

inline Status Error(std::string msg) { return Status::error(std::move(msg)); }

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status st) : v_(std::move(st)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace ferrum

// Early return on error; the expression is evaluated once.
#define FERRUM_TRY(expr)                     \
  do {                                       \
    ::ferrum::Status _st = (expr);           \
    if (!_st.ok()) return _st;               \
  } while (0)

#define FERRUM_CONCAT_INNER(a, b) a##b
#define FERRUM_CONCAT(a, b) FERRUM_CONCAT_INNER(a, b)
#define FERRUM_ASSIGN_OR_RETURN(lhs, expr) \
  FERRUM_ASSIGN_OR_RETURN_IMPL(FERRUM_CONCAT(_res_, __LINE__), lhs, expr)
#define FERRUM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
