// jinja2's tests (jinja2/tests.py) and the globals of HF's chat template environment.
#include "tokenizer/jinja_builtins.h"

#include <ctime>
#include <map>

#include "tokenizer/jinja_ops.h"
#include "tokenizer/jinja_text.h"

namespace ferrum::jinja {

namespace {

using Test = Result<bool> (*)(const Value& v, const CallArgs& a);

template <bool (*F)(const Value&)>
Result<bool> simple_test(const Value& v, const CallArgs& a) {
  FERRUM_TRY(Params::none(a, "test"));
  return F(v);
}

bool t_defined(const Value& v) { return !v.is_undefined(); }
bool t_undefined(const Value& v) { return v.is_undefined(); }
bool t_none(const Value& v) { return v.is_none(); }
bool t_boolean(const Value& v) { return v.is_bool(); }
bool t_true(const Value& v) { return v.is_bool() && v.as_bool(); }
bool t_false(const Value& v) { return v.is_bool() && !v.as_bool(); }
bool t_integer(const Value& v) { return v.is_int(); }
bool t_float(const Value& v) { return v.is_float(); }
bool t_number(const Value& v) { return v.is_number(); }
bool t_string(const Value& v) { return v.is_string(); }
bool t_mapping(const Value& v) { return v.is_dict(); }
// Undefined iterates as empty and supports len() and [], so Python calls it iterable and a sequence.
bool t_sequence(const Value& v) {
  return v.is_undefined() || v.is_string() || v.is_sequence() || v.is_dict();
}
bool t_iterable(const Value& v) { return t_sequence(v) || v.is_iterator(); }
// jinja2's Undefined defines __call__ (to raise), so callable() accepts it.
bool t_callable(const Value& v) { return v.is_function() || v.is_undefined(); }

Result<bool> case_test(const Value& v, const CallArgs& a, bool lower) {
  FERRUM_TRY(Params::none(a, lower ? "lower" : "upper"));
  const std::string s = to_str(v);
  bool cased = false;
  for (char32_t c : text::decode(s)) {
    if (lower ? text::is_upper(c) : text::is_lower(c)) return false;
    cased |= lower ? text::is_lower(c) : text::is_upper(c);
  }
  return cased;
}

// value % divisor == remainder
Result<bool> modulo_test(const Value& v, const Value& divisor, int64_t remainder) {
  FERRUM_ASSIGN_OR_RETURN(Value m, binary_op(BinaryOp::kMod, v, divisor));
  return equals(m, Value(remainder));
}

Result<bool> divisibleby(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "divisibleby", {"num"}));
  return modulo_test(v, p.get(0), 0);
}

template <int Cmp>  // 0: ==, 1: !=, 2: <, 3: <=, 4: >, 5: >=
Result<bool> compare_test(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "comparison", {"other"}));
  const Value& other = p.get(0);
  if (Cmp == 0) return equals(v, other);
  if (Cmp == 1) return !equals(v, other);
  if (v.is_undefined()) return Error(v.undefined_hint());
  if (other.is_undefined()) return Error(other.undefined_hint());
  FERRUM_ASSIGN_OR_RETURN(int c, compare(v, other));
  switch (Cmp) {
    case 2:
      return c < 0;
    case 3:
      return c <= 0;
    case 4:
      return c > 0;
    default:
      return c >= 0;
  }
}

Result<bool> in_test(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "in", {"seq"}));
  return contains(p.get(0), v);
}

// Python's `is`: None and the booleans are singletons, CPython caches small ints, and shared
// containers are the same object only when they are the same allocation.
Result<bool> sameas(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "sameas", {"other"}));
  const Value& o = p.get(0);
  if (v.type() != o.type()) return false;
  switch (v.type()) {
    case Value::Type::kNone:
      return true;
    case Value::Type::kBool:
      return v.as_bool() == o.as_bool();
    case Value::Type::kInt:
      return v.as_int() == o.as_int() && v.as_int() >= -5 && v.as_int() <= 256;
    default:
      return v.identity() != nullptr && v.identity() == o.identity();
  }
}

const std::map<std::string, Test, std::less<>>& tests() {
  static const std::map<std::string, Test, std::less<>> t = {
      {"defined", &simple_test<t_defined>},
      {"undefined", &simple_test<t_undefined>},
      {"none", &simple_test<t_none>},
      {"boolean", &simple_test<t_boolean>},
      {"true", &simple_test<t_true>},
      {"false", &simple_test<t_false>},
      {"integer", &simple_test<t_integer>},
      {"float", &simple_test<t_float>},
      {"number", &simple_test<t_number>},
      {"string", &simple_test<t_string>},
      {"mapping", &simple_test<t_mapping>},
      {"iterable", &simple_test<t_iterable>},
      {"sequence", &simple_test<t_sequence>},
      {"callable", &simple_test<t_callable>},
      {"lower", [](const Value& v, const CallArgs& a) { return case_test(v, a, true); }},
      {"upper", [](const Value& v, const CallArgs& a) { return case_test(v, a, false); }},
      {"odd",
       [](const Value& v, const CallArgs& a) -> Result<bool> {
         FERRUM_TRY(Params::none(a, "odd"));
         return modulo_test(v, Value(2), 1);
       }},
      {"even",
       [](const Value& v, const CallArgs& a) -> Result<bool> {
         FERRUM_TRY(Params::none(a, "even"));
         return modulo_test(v, Value(2), 0);
       }},
      {"divisibleby", &divisibleby},
      {"eq", &compare_test<0>},
      {"equalto", &compare_test<0>},
      {"==", &compare_test<0>},
      {"ne", &compare_test<1>},
      {"!=", &compare_test<1>},
      {"lt", &compare_test<2>},
      {"lessthan", &compare_test<2>},
      {"<", &compare_test<2>},
      {"le", &compare_test<3>},
      {"<=", &compare_test<3>},
      {"gt", &compare_test<4>},
      {"greaterthan", &compare_test<4>},
      {">", &compare_test<4>},
      {"ge", &compare_test<5>},
      {">=", &compare_test<5>},
      {"in", &in_test},
      {"sameas", &sameas},
  };
  return t;
}

// The sandbox refuses ranges longer than this (jinja2.sandbox.MAX_RANGE).
constexpr int64_t kMaxRange = 100000;

Result<Value> range(const CallArgs& a) {
  if (!a.kwargs.empty()) return Error("range() takes no keyword arguments");
  if (a.args.empty() || a.args.size() > 3)
    return Error("range expected 1 to 3 arguments, got " + std::to_string(a.args.size()));
  for (const Value& v : a.args)
    if (!v.is_int() && !v.is_bool())
      return Error(std::string("'") + type_name(v) + "' object cannot be interpreted as an integer");
  const int64_t start = a.args.size() == 1 ? 0 : a.args[0].as_int();
  const int64_t stop = a.args.size() == 1 ? a.args[0].as_int() : a.args[1].as_int();
  const int64_t step = a.args.size() == 3 ? a.args[2].as_int() : 1;
  if (step == 0) return Error("range() arg 3 must not be zero");
  std::vector<Value> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (static_cast<int64_t>(out.size()) >= kMaxRange)
      return Error("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    out.emplace_back(i);
  }
  return Value::list(std::move(out));
}

// dict(mapping, **kwargs), as namespace() also takes its initial attributes.
Result<Object> dict_of(const CallArgs& a, const char* fn) {
  if (a.args.size() > 1) return Error(std::string(fn) + " expected at most 1 positional argument");
  Object o;
  if (!a.args.empty()) {
    const Value& init = a.args[0];
    if (init.is_dict()) {
      o = init.as_dict();
    } else {
      FERRUM_ASSIGN_OR_RETURN(auto pairs, iterate(init));
      for (const Value& pair : pairs) {
        if (!pair.is_sequence() || pair.as_sequence().size() != 2 || !hashable(pair.as_sequence()[0]))
          return Error(std::string(fn) + ": expected a mapping or (key, value) pairs");
        o.set(pair.as_sequence()[0], pair.as_sequence()[1]);
      }
    }
  }
  for (const auto& [k, v] : a.kwargs) o.set(k, v);
  return o;
}

Result<Value> strftime_now(const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "strftime_now", {"format"}));
  FERRUM_ASSIGN_OR_RETURN(std::string format, p.string(0, ""));
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  std::string buf(256 + format.size() * 8, '\0');
  const size_t n = std::strftime(buf.data(), buf.size(), format.c_str(), &tm);
  if (n == 0 && !format.empty()) return Error("strftime_now: the format produced no output");
  buf.resize(n);
  return Value(std::move(buf));
}

}  // namespace

bool is_test(std::string_view name) { return tests().count(name) != 0; }

Result<bool> apply_test(std::string_view name, const Value& value, const CallArgs& args) {
  const auto it = tests().find(name);
  if (it == tests().end()) return Error("unsupported test '" + std::string(name) + "'");
  return it->second(value, args);
}

const Object& globals() {
  static const Object g = [] {
    Object o;
    o.set("range", Value::function("range", &range));
    o.set("dict", Value::function("dict", [](const CallArgs& a) -> Result<Value> {
            FERRUM_ASSIGN_OR_RETURN(Object d, dict_of(a, "dict"));
            return Value::dict(std::move(d));
          }));
    o.set("namespace", Value::function("namespace", [](const CallArgs& a) -> Result<Value> {
            FERRUM_ASSIGN_OR_RETURN(Object d, dict_of(a, "namespace"));
            return Value::new_namespace(std::move(d));
          }));
    o.set("raise_exception", Value::function("raise_exception", [](const CallArgs& a) -> Result<Value> {
            FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "raise_exception", {"message"}));
            return Error(to_str(p.get(0)));
          }));
    o.set("strftime_now", Value::function("strftime_now", &strftime_now));
    return o;
  }();
  return g;
}

}  // namespace ferrum::jinja
