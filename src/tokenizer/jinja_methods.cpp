// Attribute and item access, and the str/list/dict methods templates call (`content.split('x')`,
// `message.get('k')`). Methods that mutate are unsafe in jinja2's immutable sandbox: they read as
// undefined values that fail when called, as there.
#include <algorithm>
#include <map>

#include "tokenizer/jinja_ops.h"
#include "tokenizer/jinja_text.h"

namespace ferrum::jinja {

namespace {

using Method = Result<Value> (*)(const Value& self, const CallArgs& a);
// A null method is one jinja2's sandbox refuses; an absent name is no attribute at all.
using MethodTable = std::map<std::string, Method, std::less<>>;

Result<Value> to_list(const std::vector<std::string>& parts) {
  std::vector<Value> out(parts.begin(), parts.end());
  return Value::list(std::move(out));
}

Result<Value> affix_test(const Value& self, const CallArgs& a, const char* fn, bool prefix) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, fn, {"affix"}));
  const std::string& s = self.as_string();
  auto matches = [&](const Value& v) -> Result<bool> {
    if (!v.is_string())
      return Error(std::string(fn) + " first arg must be str or a tuple of str, not " + type_name(v));
    const std::string& x = v.as_string();
    if (x.size() > s.size()) return false;
    return prefix ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  const Value& arg = p.get(0);
  if (!arg.is_tuple()) {
    FERRUM_ASSIGN_OR_RETURN(bool m, matches(arg));
    return Value(m);
  }
  for (const Value& v : arg.as_sequence()) {
    FERRUM_ASSIGN_OR_RETURN(bool m, matches(v));
    if (m) return Value(true);
  }
  return Value(false);
}

Result<Value> split_method(const Value& self, const CallArgs& a, bool reverse) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, reverse ? "rsplit" : "split", {"sep", "maxsplit"}));
  FERRUM_ASSIGN_OR_RETURN(auto sep, p.opt_string(0));
  FERRUM_ASSIGN_OR_RETURN(int64_t maxsplit, p.integer(1, -1));
  if (sep && sep->empty()) return Error("empty separator");
  const std::string& s = self.as_string();
  return to_list(reverse ? text::rsplit(s, sep, maxsplit) : text::split(s, sep, maxsplit));
}

Result<Value> strip_method(const Value& self, const CallArgs& a, bool left, bool right) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "strip", {"chars"}));
  FERRUM_ASSIGN_OR_RETURN(auto chars, p.opt_string(0));
  return Value(text::strip(self.as_string(), chars, left, right));
}

template <std::string (*F)(std::string_view)>
Result<Value> str_case(const Value& self, const CallArgs& a) {
  FERRUM_TRY(Params::none(a, "case conversion"));
  return Value(F(self.as_string()));
}

// str.isdigit and friends: true when non-empty and every character passes.
template <bool (*F)(char32_t)>
Result<Value> str_all(const Value& self, const CallArgs& a) {
  FERRUM_TRY(Params::none(a, "character class test"));
  const std::u32string u = text::decode(self.as_string());
  return Value(!u.empty() && std::all_of(u.begin(), u.end(), F));
}

bool is_alnum(char32_t c) { return c != U'_' && text::is_word(c); }

// str.islower / str.isupper: some cased character, and none of the other case.
template <bool Lower>
Result<Value> str_case_test(const Value& self, const CallArgs& a) {
  FERRUM_TRY(Params::none(a, "case test"));
  bool cased = false;
  for (char32_t c : text::decode(self.as_string())) {
    if (Lower ? text::is_upper(c) : text::is_lower(c)) return Value(false);
    cased |= Lower ? text::is_lower(c) : text::is_upper(c);
  }
  return Value(cased);
}

Result<Value> substring_method(const Value& self, const CallArgs& a, const char* fn) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, fn, {"sub"}));
  if (!p.get(0).is_string()) return Error(std::string(fn) + "() argument must be str");
  const std::string& sub = p.get(0).as_string();
  const std::string name = fn;
  if (name == "count") return Value(text::count(self.as_string(), sub));
  return Value(text::find(self.as_string(), sub, name == "rfind"));
}

const MethodTable& str_methods() {
  static const MethodTable t = {
      {"startswith", [](const Value& s, const CallArgs& a) { return affix_test(s, a, "startswith", true); }},
      {"endswith", [](const Value& s, const CallArgs& a) { return affix_test(s, a, "endswith", false); }},
      {"split", [](const Value& s, const CallArgs& a) { return split_method(s, a, false); }},
      {"rsplit", [](const Value& s, const CallArgs& a) { return split_method(s, a, true); }},
      {"strip", [](const Value& s, const CallArgs& a) { return strip_method(s, a, true, true); }},
      {"lstrip", [](const Value& s, const CallArgs& a) { return strip_method(s, a, true, false); }},
      {"rstrip", [](const Value& s, const CallArgs& a) { return strip_method(s, a, false, true); }},
      {"upper", &str_case<text::upper>},
      {"lower", &str_case<text::lower>},
      {"title", &str_case<text::title>},
      {"capitalize", &str_case<text::capitalize>},
      {"isdigit", &str_all<text::is_digit>},
      {"isalpha", &str_all<text::is_alpha>},
      {"isalnum", &str_all<is_alnum>},
      {"isspace", &str_all<text::is_space>},
      {"islower", &str_case_test<true>},
      {"isupper", &str_case_test<false>},
      {"find", [](const Value& s, const CallArgs& a) { return substring_method(s, a, "find"); }},
      {"rfind", [](const Value& s, const CallArgs& a) { return substring_method(s, a, "rfind"); }},
      {"count", [](const Value& s, const CallArgs& a) { return substring_method(s, a, "count"); }},
      {"replace",
       [](const Value& s, const CallArgs& a) -> Result<Value> {
         FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "replace", {"old", "new", "count"}));
         if (!p.get(0).is_string() || !p.get(1).is_string()) return Error("replace() arguments must be str");
         FERRUM_ASSIGN_OR_RETURN(int64_t count, p.integer(2, -1));
         return Value(text::replace(s.as_string(), p.get(0).as_string(), p.get(1).as_string(), count));
       }},
      {"join",
       [](const Value& s, const CallArgs& a) -> Result<Value> {
         FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "join", {"iterable"}));
         FERRUM_ASSIGN_OR_RETURN(auto items, iterate(p.get(0)));
         std::string out;
         for (size_t i = 0; i < items.size(); ++i) {
           if (!items[i].is_string())
             return Error("sequence item " + std::to_string(i) + ": expected str instance, " +
                          type_name(items[i]) + " found");
           if (i) out += s.as_string();
           out += items[i].as_string();
         }
         return Value(std::move(out));
       }},
      {"splitlines",
       [](const Value& s, const CallArgs& a) -> Result<Value> {
         FERRUM_TRY(Params::none(a, "splitlines"));
         return to_list(text::splitlines(s.as_string()));
       }},
      {"removeprefix",
       [](const Value& s, const CallArgs& a) -> Result<Value> {
         FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "removeprefix", {"prefix"}));
         FERRUM_ASSIGN_OR_RETURN(std::string x, p.string(0, ""));
         const std::string& str = s.as_string();
         return Value(str.compare(0, x.size(), x) == 0 ? str.substr(x.size()) : str);
       }},
      {"removesuffix",
       [](const Value& s, const CallArgs& a) -> Result<Value> {
         FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "removesuffix", {"suffix"}));
         FERRUM_ASSIGN_OR_RETURN(std::string x, p.string(0, ""));
         const std::string& str = s.as_string();
         const bool ends =
             !x.empty() && x.size() <= str.size() && str.compare(str.size() - x.size(), x.size(), x) == 0;
         return Value(ends ? str.substr(0, str.size() - x.size()) : str);
       }},
  };
  return t;
}

// Python str methods outside the subset: calling one must fail loudly, not read as undefined.
constexpr std::string_view kOtherStrMethods[] = {
    "casefold",   "center",   "encode",    "expandtabs",   "format",    "format_map",
    "index",      "isascii",  "isdecimal", "isidentifier", "isnumeric", "isprintable",
    "istitle",    "ljust",    "maketrans", "partition",    "rindex",    "rjust",
    "rpartition", "swapcase", "translate", "zfill"};

Result<Value> dict_view(const Value& self, const CallArgs& a, int which) {
  FERRUM_TRY(Params::none(a, "dict view"));
  std::vector<Value> out;
  for (const auto& [k, v] : self.as_dict().items()) {
    if (which == 0) out.push_back(k);
    if (which == 1) out.push_back(v);
    if (which == 2) out.push_back(Value::tuple({k, v}));
  }
  return Value::list(std::move(out));
}

const MethodTable& dict_methods() {
  static const MethodTable t = {
      {"keys", [](const Value& s, const CallArgs& a) { return dict_view(s, a, 0); }},
      {"values", [](const Value& s, const CallArgs& a) { return dict_view(s, a, 1); }},
      {"items", [](const Value& s, const CallArgs& a) { return dict_view(s, a, 2); }},
      {"get",
       [](const Value& s, const CallArgs& a) -> Result<Value> {
         FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "get", {"key", "default"}));
         const Value* v = hashable(p.get(0)) ? s.as_dict().find_key(p.get(0)) : nullptr;
         if (v) return *v;
         return p.has(1) ? p.get(1) : Value::none();
       }},
      {"copy",
       [](const Value& s, const CallArgs& a) -> Result<Value> {
         FERRUM_TRY(Params::none(a, "copy"));
         return s;
       }},
      {"pop", nullptr},
      {"popitem", nullptr},
      {"setdefault", nullptr},
      {"update", nullptr},
      {"clear", nullptr},
  };
  return t;
}

Result<Value> seq_search(const Value& self, const CallArgs& a, bool index) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, index ? "index" : "count", {"value"}));
  const auto& items = self.as_sequence();
  int64_t n = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!equals(items[i], p.get(0))) continue;
    if (index) return Value(static_cast<int64_t>(i));
    ++n;
  }
  if (index) return Error(to_repr(p.get(0)) + " is not in " + type_name(self));
  return Value(n);
}

const MethodTable& seq_methods(bool tuple) {
  static const MethodTable tuple_table = {
      {"count", [](const Value& s, const CallArgs& a) { return seq_search(s, a, false); }},
      {"index", [](const Value& s, const CallArgs& a) { return seq_search(s, a, true); }},
  };
  static const MethodTable list_table = [] {
    MethodTable t = tuple_table;
    t["copy"] = [](const Value& s, const CallArgs& a) -> Result<Value> {
      FERRUM_TRY(Params::none(a, "copy"));
      return s;
    };
    for (const char* name : {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"})
      t[name] = nullptr;
    return t;
  }();
  return tuple ? tuple_table : list_table;
}

const MethodTable* methods_of(const Value& v) {
  if (v.is_string()) return &str_methods();
  if (v.is_dict()) return &dict_methods();
  if (v.is_sequence()) return &seq_methods(v.is_tuple());
  return nullptr;
}

std::string object_type_repr(const Value& v) {
  if (v.is_none()) return "None";
  if (v.is_namespace()) return "jinja2.utils.Namespace object";
  return std::string(type_name(v)) + " object";
}

Value unsafe(const Value& obj, const std::string& name) {
  return Value::undefined("access to attribute '" + name + "' of '" + type_name(obj) + "' object is unsafe.");
}

// jinja2's message for a missing attribute.
std::string missing_attribute(const Value& obj, const std::string& name) {
  return text::repr(object_type_repr(obj)) + " has no attribute " + text::repr(name);
}

// A method of obj's type, bound to obj; nullopt when the type has no such method.
Result<std::optional<Value>> bound_method(const Value& obj, const std::string& name) {
  const MethodTable* table = methods_of(obj);
  if (!table) return std::optional<Value>();
  const auto it = table->find(name);
  if (it == table->end()) {
    if (obj.is_string() && std::find(std::begin(kOtherStrMethods), std::end(kOtherStrMethods), name) !=
                               std::end(kOtherStrMethods))
      return Error("unsupported str method '" + name + "'");
    return std::optional<Value>();
  }
  if (!it->second) return std::optional<Value>(unsafe(obj, name));
  const Method m = it->second;
  return std::optional<Value>(Value::function(std::string(type_name(obj)) + "." + name,
                                              [obj, m](const CallArgs& a) { return m(obj, a); }));
}

}  // namespace

Result<Value> get_attr(const Value& obj, const std::string& name) {
  if (name.size() > 1 && name[0] == '_' && name[1] == '_') return unsafe(obj, name);
  if (obj.is_namespace()) {
    const Value* v = obj.namespace_attrs().find(name);
    return v ? *v : Value::undefined(missing_attribute(obj, name));
  }
  FERRUM_ASSIGN_OR_RETURN(auto method, bound_method(obj, name));
  if (method) return *method;
  if (obj.is_dict()) {
    const Value* v = obj.as_dict().find(name);
    if (v) return *v;
  }
  return Value::undefined(missing_attribute(obj, name));
}

Result<Value> get_item(const Value& obj, const Value& key) {
  if (obj.is_dict() && hashable(key)) {
    const Value* v = obj.as_dict().find_key(key);
    if (v) return *v;
  }
  if ((obj.is_sequence() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    const auto len =
        static_cast<int64_t>(obj.is_string() ? text::length(obj.as_string()) : obj.as_sequence().size());
    int64_t i = key.as_int();
    if (i < 0) i += len;
    if (i >= 0 && i < len) {
      if (obj.is_sequence()) return obj.as_sequence()[static_cast<size_t>(i)];
      return Value(text::encode(std::u32string(1, text::decode(obj.as_string())[static_cast<size_t>(i)])));
    }
  }
  if (key.is_string()) return get_attr(obj, key.as_string());
  return Value::undefined(object_type_repr(obj) + " has no element " + to_repr(key));
}

}  // namespace ferrum::jinja
