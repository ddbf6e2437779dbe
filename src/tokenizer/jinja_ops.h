// The Python object model under jinja2's ImmutableSandboxedEnvironment: attribute and item access
// (with str/list/dict methods), slicing, iteration, membership and arithmetic. Errors carry no
// source position; the evaluator adds it.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ferrum/status.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_value.h"

namespace ferrum::jinja {

// Binds call arguments to named parameters like a Python signature: positionals first, then
// keywords; absent parameters read as undefined.
class Params {
 public:
  static Result<Params> bind(const CallArgs& a, std::string_view fn,
                             std::initializer_list<std::string_view> names);
  // For functions without parameters.
  static Status none(const CallArgs& a, std::string_view fn);
  bool has(size_t i) const { return values_[i].has_value(); }
  // Absent or None.
  bool is_none(size_t i) const { return !has(i) || values_[i]->is_none(); }
  const Value& get(size_t i) const;
  bool flag(size_t i, bool def) const { return has(i) ? truthy(*values_[i]) : def; }
  Result<int64_t> integer(size_t i, int64_t def) const;
  // Absent or None gives nullopt; otherwise the value must be a string.
  Result<std::optional<std::string>> opt_string(size_t i) const;
  Result<std::string> string(size_t i, std::string def) const;

 private:
  std::string fn_;
  std::vector<std::string_view> names_;
  std::vector<std::optional<Value>> values_;
};

// jinja2's getattr: methods of str/list/dict first, then dict items; missing gives undefined.
Result<Value> get_attr(const Value& obj, const std::string& name);
// jinja2's getitem: obj[key], falling back to getattr for string keys.
Result<Value> get_item(const Value& obj, const Value& key);
// obj[start:stop:step] on strings, lists and tuples.
Result<Value> slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
// The items a for loop visits: list items, dict keys, string characters, an iterator's remaining
// items (consuming them); undefined is empty.
Result<std::vector<Value>> iterate(const Value& v);
// `item in container`
Result<bool> contains(const Value& container, const Value& item);
Result<Value> binary_op(BinaryOp op, const Value& a, const Value& b);
Result<Value> unary_op(UnaryOp op, const Value& v);

}  // namespace ferrum::jinja
