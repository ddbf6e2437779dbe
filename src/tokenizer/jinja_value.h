// Values of the Jinja interpreter, with the Python semantics jinja2 inherits: truthiness, str(),
// repr(), ==, ordering, json.dumps. Lists, tuples and dicts are immutable and shared; a namespace
// (jinja2's `namespace()`) and an iterator (what map/select/... return: a Python generator, always
// true, without len(), consumed by iteration) are mutable and shared by reference.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "ferrum/status.h"

namespace ferrum::jinja {

class Value;
struct CallArgs;
using NativeFunction = std::function<Result<Value>(const CallArgs&)>;

class Object;

class Value {
 public:
  enum class Type : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kArray,
    kObject,
    kNamespace,
    kFunction,
    kIterator
  };

  Value() = default;                            // undefined, with no hint
  Value(bool b) : v_(b) {}                      // NOLINT: implicit by design
  Value(int64_t i) : v_(i) {}                   // NOLINT
  Value(int i) : v_(int64_t{i}) {}              // NOLINT
  Value(double d) : v_(d) {}                    // NOLINT
  Value(std::string s) : v_(std::move(s)) {}    // NOLINT
  Value(const char* s) : v_(std::string(s)) {}  // NOLINT
  // `hint` is the message raised when the value is used in a way an undefined value cannot be.
  static Value undefined(std::string hint);
  static Value none();
  static Value list(std::vector<Value> items);
  static Value tuple(std::vector<Value> items);
  static Value dict(Object o);
  static Value new_namespace(Object attrs);
  // `errors_have_position`: the function's errors already name a template position (macros).
  static Value function(std::string name, NativeFunction fn, bool errors_have_position = false);
  static Value iterator(std::vector<Value> items);

  Type type() const { return static_cast<Type>(v_.index()); }
  bool is_undefined() const { return type() == Type::kUndefined; }
  bool is_none() const { return type() == Type::kNone; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_int() const { return type() == Type::kInt; }
  bool is_float() const { return type() == Type::kFloat; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }  // Python's numbers.Number
  bool is_string() const { return type() == Type::kString; }
  bool is_sequence() const { return type() == Type::kArray; }  // list or tuple
  bool is_tuple() const { return is_sequence() && std::get<kSeq>(v_)->tuple; }
  bool is_dict() const { return type() == Type::kObject; }
  bool is_namespace() const { return type() == Type::kNamespace; }
  bool is_function() const { return type() == Type::kFunction; }
  bool is_iterator() const { return type() == Type::kIterator; }

  const std::string& undefined_hint() const { return std::get<kUndef>(v_).hint; }
  bool as_bool() const { return std::get<bool>(v_); }
  // int, or bool as 0/1 (Python's bool is an int).
  int64_t as_int() const { return is_bool() ? int64_t{as_bool()} : std::get<int64_t>(v_); }
  double as_double() const { return is_float() ? std::get<double>(v_) : static_cast<double>(as_int()); }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const std::vector<Value>& as_sequence() const { return std::get<kSeq>(v_)->items; }
  const Object& as_dict() const { return *std::get<kDict>(v_); }
  Object& namespace_attrs() const;
  const std::string& function_name() const { return std::get<kFn>(v_)->name; }
  Result<Value> call(const CallArgs& args) const { return std::get<kFn>(v_)->fn(args); }
  bool errors_have_position() const { return std::get<kFn>(v_)->errors_have_position; }
  // An iterator's items not consumed yet; taking them consumes them.
  std::vector<Value> take_rest() const;
  // An iterator's next item (consumed), or nullopt at its end.
  std::optional<Value> take_next() const;

  // Identity of shared objects, for Python's `is` on namespaces and functions.
  const void* identity() const;

 private:
  struct Undef {
    std::string hint;
  };
  struct Seq {
    std::vector<Value> items;
    bool tuple = false;
  };
  struct Namespace;
  struct Iter;
  struct Fn {
    std::string name;
    NativeFunction fn;
    bool errors_have_position = false;
  };
  static constexpr size_t kUndef = 0, kSeq = 6, kDict = 7, kNs = 8, kFn = 9, kIter = 10;
  std::variant<Undef, std::nullptr_t, bool, int64_t, double, std::string, std::shared_ptr<const Seq>,
               std::shared_ptr<const Object>, std::shared_ptr<Namespace>, std::shared_ptr<const Fn>,
               std::shared_ptr<Iter>>
      v_;
};

// A Python dict: insertion-ordered, so tool schemas keep their key order. Keys compare with ==
// (1, 1.0 and True are one key), as Python's hashing makes them.
class Object {
 public:
  using Item = std::pair<Value, Value>;
  const Value* find_key(const Value& key) const;
  const Value* find(std::string_view key) const;
  void set(Value key, Value value);  // replaces in place, or appends
  const std::vector<Item>& items() const { return items_; }
  size_t size() const { return items_.size(); }

 private:
  std::vector<Item> items_;
};

struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
};

// Whether v can be a dict key (Python: lists and dicts are unhashable).
bool hashable(const Value& v);
// Python's type(v).__name__, for error messages.
const char* type_name(const Value& v);
bool truthy(const Value& v);
std::string to_str(const Value& v);   // str(v); undefined prints as ""
std::string to_repr(const Value& v);  // repr(v)
bool equals(const Value& a, const Value& b);
// Python ordering (<0, 0, >0); mismatched types are a TypeError.
Result<int> compare(const Value& a, const Value& b);

// Python's sorted(items, key=key_of, reverse=reverse): stable; keys of mismatched types are a TypeError.
template <class T, class KeyOf>
Status sort_by_key(std::vector<T>& items, KeyOf key_of, bool reverse) {
  Status err;
  std::stable_sort(items.begin(), items.end(), [&](const T& x, const T& y) {
    auto c = reverse ? compare(key_of(y), key_of(x)) : compare(key_of(x), key_of(y));
    if (!c.ok()) err = c.status();
    return c.ok() && *c < 0;
  });
  return err;
}

// json.dumps(v, ensure_ascii=..., indent=..., separators=..., sort_keys=...).
struct JsonStyle {
  std::optional<std::string> indent;  // None: one line
  std::string item_sep = ", ";
  std::string key_sep = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
};
Status dump_json(const Value& v, const JsonStyle& style, std::string& out);

Value from_json(const nlohmann::ordered_json& j);
Result<nlohmann::ordered_json> to_json(const Value& v);

}  // namespace ferrum::jinja
