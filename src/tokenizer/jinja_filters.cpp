// jinja2's filters (jinja2/filters.py) with their Python semantics, and Hugging Face's `tojson`
// (json.dumps with ensure_ascii=False instead of jinja2's HTML-safe variant).
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_ops.h"
#include "tokenizer/jinja_text.h"

namespace ferrum::jinja {

namespace {

using Filter = Result<Value> (*)(const Value& v, const CallArgs& a);

Status undefined_error(const Value& v) { return Error(v.undefined_hint()); }

// jinja2's make_attrgetter: "a.b.0" looks up items a, b, then 0; `def` replaces undefined parts.
Result<Value> lookup_path(const Value& item, const Value& attribute, const Value& def) {
  std::vector<Value> parts;
  if (attribute.is_string()) {
    for (const std::string& p : text::split(attribute.as_string(), std::string("."), -1)) {
      const bool digits =
          !p.empty() && std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; });
      parts.push_back(digits ? Value(static_cast<int64_t>(std::stoll(p))) : Value(p));
    }
  } else {
    parts.push_back(attribute);
  }
  Value cur = item;
  for (const Value& part : parts) {
    if (cur.is_undefined()) return undefined_error(cur);
    FERRUM_ASSIGN_OR_RETURN(cur, get_item(cur, part));
    if (!def.is_none() && !def.is_undefined() && cur.is_undefined()) cur = def;
  }
  return cur;
}

// Sort/unique/min/max key: the attribute (comma-separated attributes for sort), lower-cased
// strings unless case-sensitive.
Result<Value> sort_key(const Value& item, const Value& attribute, bool case_sensitive, bool multi) {
  auto fold = [&](Value v) {
    return !case_sensitive && v.is_string() ? Value(text::lower(v.as_string())) : v;
  };
  if (attribute.is_none() || attribute.is_undefined()) return fold(item);
  if (multi && attribute.is_string() && attribute.as_string().find(',') != std::string::npos) {
    std::vector<Value> keys;
    for (const std::string& a : text::split(attribute.as_string(), std::string(","), -1)) {
      FERRUM_ASSIGN_OR_RETURN(Value k, lookup_path(item, Value(a), Value::none()));
      keys.push_back(fold(k));
    }
    return Value::list(std::move(keys));
  }
  FERRUM_ASSIGN_OR_RETURN(Value k, lookup_path(item, attribute, Value::none()));
  return fold(k);
}

Result<Value> length(const Value& v, const CallArgs& a) {
  FERRUM_TRY(Params::none(a, "length"));
  switch (v.type()) {
    case Value::Type::kUndefined:
      return Value(0);
    case Value::Type::kString:
      return Value(static_cast<int64_t>(text::length(v.as_string())));
    case Value::Type::kArray:
      return Value(static_cast<int64_t>(v.as_sequence().size()));
    case Value::Type::kObject:
      return Value(static_cast<int64_t>(v.as_dict().size()));
    default:
      return Error(std::string("object of type '") + type_name(v) + "' has no len()");
  }
}

Result<Value> default_filter(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "default", {"default_value", "boolean"}));
  if (v.is_undefined() || (p.flag(1, false) && !truthy(v))) return p.has(0) ? p.get(0) : Value("");
  return v;
}

template <std::string (*F)(std::string_view)>
Result<Value> string_filter(const Value& v, const CallArgs& a) {
  FERRUM_TRY(Params::none(a, "string filter"));
  return Value(F(to_str(v)));
}

std::string identity_str(std::string_view s) { return std::string(s); }

// jinja2's title filter: upper-case the first character after -, (, {, [, < or whitespace.
std::string jinja_title(std::string_view s) {
  std::string out;
  bool start = true;
  for (char32_t c : text::decode(s)) {
    const bool sep = text::is_space(c) || c == U'-' || c == U'(' || c == U'{' || c == U'[' || c == U'<';
    const std::string one = text::encode(std::u32string(1, c));
    out += sep ? one : start ? text::upper(one) : text::lower(one);
    start = sep;
  }
  return out;
}

Result<Value> trim(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "trim", {"chars"}));
  FERRUM_ASSIGN_OR_RETURN(auto chars, p.opt_string(0));
  return Value(text::strip(to_str(v), chars, true, true));
}

Result<Value> replace(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "replace", {"old", "new", "count"}));
  int64_t count = -1;
  if (!p.is_none(2)) {
    FERRUM_ASSIGN_OR_RETURN(count, p.integer(2, -1));
  }
  return Value(text::replace(to_str(v), to_str(p.get(0)), to_str(p.get(1)), count));
}

Result<Value> wordcount(const Value& v, const CallArgs& a) {
  FERRUM_TRY(Params::none(a, "wordcount"));
  int64_t n = 0;
  bool in_word = false;
  for (char32_t c : text::decode(to_str(v))) {
    const bool w = text::is_word(c);
    n += w && !in_word;
    in_word = w;
  }
  return Value(n);
}

Result<Value> indent(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "indent", {"width", "first", "blank"}));
  if (v.is_undefined()) return undefined_error(v);
  if (!v.is_string())
    return Error(std::string("unsupported operand type(s) for +=: '") + type_name(v) + "' and 'str'");
  std::string pad = "    ";
  if (p.has(0)) {
    if (p.get(0).is_string()) {
      pad = p.get(0).as_string();
    } else {
      FERRUM_ASSIGN_OR_RETURN(int64_t width, p.integer(0, 4));
      pad = std::string(static_cast<size_t>(std::max<int64_t>(width, 0)), ' ');
    }
  }
  const std::vector<std::string> lines = text::splitlines(v.as_string() + "\n");
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i) out += "\n";
    if (i && (p.flag(2, false) || !lines[i].empty())) out += pad;
    out += lines[i];
  }
  return Value(p.flag(1, false) ? pad + out : out);
}

Result<Value> first(const Value& v, const CallArgs& a) {
  FERRUM_TRY(Params::none(a, "first"));
  if (v.is_iterator()) {  // takes only the first item
    if (auto item = v.take_next()) return *item;
    return Value::undefined("No first item, sequence was empty.");
  }
  FERRUM_ASSIGN_OR_RETURN(auto items, iterate(v));
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Result<Value> last(const Value& v, const CallArgs& a) {
  FERRUM_TRY(Params::none(a, "last"));
  if (v.is_iterator()) return Error("'generator' object is not reversible");
  FERRUM_ASSIGN_OR_RETURN(auto items, iterate(v));
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Result<Value> list(const Value& v, const CallArgs& a) {
  FERRUM_TRY(Params::none(a, "list"));
  FERRUM_ASSIGN_OR_RETURN(auto items, iterate(v));
  return Value::list(std::move(items));
}

Result<Value> reverse(const Value& v, const CallArgs& a) {
  FERRUM_TRY(Params::none(a, "reverse"));
  if (v.is_string()) {
    std::u32string u = text::decode(v.as_string());
    std::reverse(u.begin(), u.end());
    return Value(text::encode(u));
  }
  // reversed() of a list or dict is an iterator; a generator is first made a list.
  const bool from_iterator = v.is_iterator();
  auto items = iterate(v);
  if (!items.ok()) return Error("argument must be iterable");
  std::reverse(items->begin(), items->end());
  return from_iterator ? Value::list(std::move(items).value()) : Value::iterator(std::move(items).value());
}

Result<Value> join(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "join", {"d", "attribute"}));
  FERRUM_ASSIGN_OR_RETURN(auto items, iterate(v));
  const std::string sep = p.has(0) ? to_str(p.get(0)) : "";
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (!p.is_none(1)) {
      FERRUM_ASSIGN_OR_RETURN(item, lookup_path(item, p.get(1), Value::none()));
    }
    if (i) out += sep;
    out += to_str(item);
  }
  return Value(std::move(out));
}

Result<Value> items(const Value& v, const CallArgs& a) {
  FERRUM_TRY(Params::none(a, "items"));
  if (v.is_undefined()) return Value::iterator({});
  if (!v.is_dict()) return Error("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  for (const auto& [k, val] : v.as_dict().items()) out.push_back(Value::tuple({k, val}));
  return Value::iterator(std::move(out));
}

Result<Value> dictsort(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "dictsort", {"case_sensitive", "by", "reverse"}));
  if (v.is_undefined()) return undefined_error(v);
  if (!v.is_dict())
    return Error(std::string("dictsort: '") + type_name(v) + "' object has no attribute 'items'");
  FERRUM_ASSIGN_OR_RETURN(std::string by, p.string(1, "key"));
  if (by != "key" && by != "value") return Error("You can only sort by either \"key\" or \"value\"");
  const bool case_sensitive = p.flag(0, false), rev = p.flag(2, false);
  std::vector<std::pair<Value, Value>> keyed;  // (key, item)
  for (const auto& [k, val] : v.as_dict().items()) {
    FERRUM_ASSIGN_OR_RETURN(Value key, sort_key(by == "key" ? k : val, Value::none(), case_sensitive, false));
    keyed.emplace_back(std::move(key), Value::tuple({k, val}));
  }
  FERRUM_TRY(sort_by_key(
      keyed, [](const auto& kv) -> const Value& { return kv.first; }, rev));
  std::vector<Value> out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::list(std::move(out));
}

Result<Value> sort(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "sort", {"reverse", "case_sensitive", "attribute"}));
  FERRUM_ASSIGN_OR_RETURN(auto items, iterate(v));
  const bool rev = p.flag(0, false);
  std::vector<std::pair<Value, Value>> keyed;
  for (const Value& item : items) {
    FERRUM_ASSIGN_OR_RETURN(Value key, sort_key(item, p.get(2), p.flag(1, false), true));
    keyed.emplace_back(std::move(key), item);
  }
  FERRUM_TRY(sort_by_key(
      keyed, [](const auto& kv) -> const Value& { return kv.first; }, rev));
  std::vector<Value> out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::list(std::move(out));
}

Result<Value> unique(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "unique", {"case_sensitive", "attribute"}));
  FERRUM_ASSIGN_OR_RETURN(auto items, iterate(v));
  std::vector<Value> seen, out;
  for (const Value& item : items) {
    FERRUM_ASSIGN_OR_RETURN(Value key, sort_key(item, p.get(1), p.flag(0, false), false));
    if ((key.is_sequence() && !key.is_tuple()) || key.is_dict())
      return Error(std::string("unhashable type: '") + type_name(key) + "'");
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) continue;
    seen.push_back(std::move(key));
    out.push_back(item);
  }
  return Value::iterator(std::move(out));
}

Result<Value> min_max(const Value& v, const CallArgs& a, bool want_max) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, want_max ? "max" : "min", {"case_sensitive", "attribute"}));
  FERRUM_ASSIGN_OR_RETURN(auto items, iterate(v));
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  FERRUM_ASSIGN_OR_RETURN(Value best_key, sort_key(items[0], p.get(1), p.flag(0, false), false));
  for (size_t i = 1; i < items.size(); ++i) {
    FERRUM_ASSIGN_OR_RETURN(Value key, sort_key(items[i], p.get(1), p.flag(0, false), false));
    FERRUM_ASSIGN_OR_RETURN(int c, compare(key, best_key));
    if (want_max ? c > 0 : c < 0) {
      best = i;
      best_key = std::move(key);
    }
  }
  return items[best];
}

Result<Value> sum(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "sum", {"attribute", "start"}));
  FERRUM_ASSIGN_OR_RETURN(auto items, iterate(v));
  Value total = p.has(1) ? p.get(1) : Value(0);
  for (const Value& item : items) {
    Value x = item;
    if (!p.is_none(0)) {
      FERRUM_ASSIGN_OR_RETURN(x, lookup_path(item, p.get(0), Value::none()));
    }
    FERRUM_ASSIGN_OR_RETURN(total, binary_op(BinaryOp::kAdd, total, x));
  }
  return total;
}

// map(attribute='x', default=d) or map('filter', args...)
Result<Value> map(const Value& v, const CallArgs& a) {
  // jinja2 does not look into a false value (so `false|map(...)` is an empty generator).
  std::vector<Value> items;
  if (truthy(v)) {
    FERRUM_ASSIGN_OR_RETURN(items, iterate(v));
  }
  std::vector<Value> out;
  if (a.args.empty()) {
    FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "map", {"attribute", "default"}));
    if (!p.has(0)) return Error("map requires a filter argument");
    for (const Value& item : items) {
      FERRUM_ASSIGN_OR_RETURN(Value x, lookup_path(item, p.get(0), p.get(1)));
      out.push_back(std::move(x));
    }
    return Value::iterator(std::move(out));
  }
  if (!a.args[0].is_string()) return Error("map: the filter name must be a string");
  const std::string name = a.args[0].as_string();
  if (!is_filter(name)) return Error("unsupported filter '" + name + "'");
  CallArgs rest{std::vector<Value>(a.args.begin() + 1, a.args.end()), a.kwargs};
  for (const Value& item : items) {
    FERRUM_ASSIGN_OR_RETURN(Value x, apply_filter(name, item, rest));
    out.push_back(std::move(x));
  }
  return Value::iterator(std::move(out));
}

// select / reject / selectattr / rejectattr: args are [attribute,] [test name, test args...].
Result<Value> select(const Value& v, const CallArgs& a, bool keep_if, bool by_attribute) {
  std::vector<Value> items;
  if (truthy(v)) {
    FERRUM_ASSIGN_OR_RETURN(items, iterate(v));
  }
  if (by_attribute && a.args.empty()) return Error("Missing parameter for attribute name");
  const size_t off = by_attribute ? 1 : 0;
  std::string test;
  if (a.args.size() > off) {
    if (!a.args[off].is_string()) return Error("the test name must be a string");
    test = a.args[off].as_string();
    if (!is_test(test)) return Error("unsupported test '" + test + "'");
  }
  CallArgs rest;
  if (a.args.size() > off + 1)
    rest.args.assign(a.args.begin() + static_cast<std::ptrdiff_t>(off) + 1, a.args.end());
  rest.kwargs = a.kwargs;
  std::vector<Value> out;
  for (const Value& item : items) {
    Value x = item;
    if (by_attribute) {
      FERRUM_ASSIGN_OR_RETURN(x, lookup_path(item, a.args[0], Value::none()));
    }
    bool pass = truthy(x);
    if (!test.empty()) {
      FERRUM_ASSIGN_OR_RETURN(pass, apply_test(test, x, rest));
    }
    if (pass == keep_if) out.push_back(item);
  }
  return Value::iterator(std::move(out));
}

// Python's float(str): surrounding whitespace, underscores between digits, inf and nan.
std::optional<double> parse_float(const std::string& s) {
  std::string t = text::strip(s, std::nullopt, true, true);
  std::string clean;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '_' && i > 0 && i + 1 < t.size() && std::isdigit(static_cast<unsigned char>(t[i - 1])) &&
        std::isdigit(static_cast<unsigned char>(t[i + 1])))
      continue;
    clean.push_back(t[i]);
  }
  if (clean.empty() || clean.find_first_of("xXpP") != std::string::npos) return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(clean.c_str(), &end);
  if (end != clean.c_str() + clean.size()) return std::nullopt;
  return d;
}

// Python's int(str, base).
std::optional<int64_t> parse_int(const std::string& s, int64_t base) {
  std::string t = text::strip(s, std::nullopt, true, true);
  bool neg = false;
  if (!t.empty() && (t[0] == '+' || t[0] == '-')) {
    neg = t[0] == '-';
    t.erase(0, 1);
  }
  if (t.size() > 2 && t[0] == '0') {
    const char p = static_cast<char>(t[1] | 0x20);
    const int64_t prefixed = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
    if (prefixed && (base == prefixed || base == 0)) {
      base = prefixed;
      t.erase(0, 2);
      if (!t.empty() && t[0] == '_') t.erase(0, 1);
    }
  }
  if (base == 0) base = 10;
  if (t.empty() || t.front() == '_' || t.back() == '_' || t.find("__") != std::string::npos)
    return std::nullopt;
  t.erase(std::remove(t.begin(), t.end(), '_'), t.end());
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(t.c_str(), &end, static_cast<int>(base));
  if (errno == ERANGE || end != t.c_str() + t.size() || t[0] == '+' || t[0] == '-') return std::nullopt;
  return neg ? -v : v;
}

Result<Value> int_filter(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "int", {"default", "base"}));
  FERRUM_ASSIGN_OR_RETURN(int64_t base, p.integer(1, 10));
  const Value def = p.has(0) ? p.get(0) : Value(0);
  if (v.is_undefined()) return undefined_error(v);
  if (v.is_int() || v.is_bool()) return Value(v.as_int());
  if (v.is_float()) {
    const double d = v.as_double();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return def;
    return Value(static_cast<int64_t>(std::trunc(d)));
  }
  if (!v.is_string()) return def;
  if (auto i = parse_int(v.as_string(), base)) return Value(*i);
  // jinja2 falls back to int(float(value)) so that "42.23"|int gives 42.
  if (auto d = parse_float(v.as_string()); d && std::isfinite(*d) && std::fabs(*d) < 9.2e18)
    return Value(static_cast<int64_t>(std::trunc(*d)));
  return def;
}

Result<Value> float_filter(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "float", {"default"}));
  const Value def = p.has(0) ? p.get(0) : Value(0.0);
  if (v.is_undefined()) return undefined_error(v);
  if (v.is_number()) return Value(v.as_double());
  if (v.is_string())
    if (auto d = parse_float(v.as_string())) return Value(*d);
  return def;
}

Result<Value> abs_filter(const Value& v, const CallArgs& a) {
  FERRUM_TRY(Params::none(a, "abs"));
  if (v.is_undefined()) return undefined_error(v);
  if (v.is_float()) return Value(std::fabs(v.as_double()));
  if (v.is_number()) {
    if (v.as_int() == INT64_MIN) return Error("integer overflow");
    return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  return Error(std::string("bad operand type for abs(): '") + type_name(v) + "'");
}

// Python's round(x, n): correctly rounded, ties to even.
double round_half_even(double x, int64_t digits) {
  if (digits > 300 || !std::isfinite(x)) return x;
  if (digits >= 0) {
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(digits), x);
    return std::strtod(buf, nullptr);
  }
  const double pow1 = std::pow(10.0, static_cast<double>(-digits));
  const double y = x / pow1;
  double z = std::nearbyint(y);
  return z * pow1;
}

Result<Value> round_filter(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p, Params::bind(a, "round", {"precision", "method"}));
  FERRUM_ASSIGN_OR_RETURN(int64_t precision, p.integer(0, 0));
  FERRUM_ASSIGN_OR_RETURN(std::string method, p.string(1, "common"));
  if (method != "common" && method != "ceil" && method != "floor")
    return Error("method must be common, ceil or floor");
  if (v.is_undefined()) return undefined_error(v);
  if (!v.is_number()) return Error(std::string("type ") + type_name(v) + " doesn't define __round__ method");
  if (method == "common") {
    if (!v.is_float() && precision >= 0) return Value(v.as_int());
    return Value(round_half_even(v.as_double(), precision));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * scale;
  return Value((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
}

// HF's tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
Result<Value> tojson(const Value& v, const CallArgs& a) {
  FERRUM_ASSIGN_OR_RETURN(auto p,
                          Params::bind(a, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"}));
  JsonStyle style;
  style.ensure_ascii = p.flag(0, false);
  style.sort_keys = p.flag(3, false);
  if (!p.is_none(1)) {
    const Value& ind = p.get(1);
    if (ind.is_string()) {
      style.indent = ind.as_string();
    } else if (ind.is_int() || ind.is_bool()) {
      style.indent = std::string(static_cast<size_t>(std::max<int64_t>(ind.as_int(), 0)), ' ');
    } else {
      return Error(std::string("tojson: indent must be an integer or a string, not '") + type_name(ind) +
                   "'");
    }
    style.item_sep = ",";
  }
  if (!p.is_none(2)) {
    const Value& sep = p.get(2);
    if (!sep.is_sequence() || sep.as_sequence().size() != 2 || !sep.as_sequence()[0].is_string() ||
        !sep.as_sequence()[1].is_string())
      return Error("tojson: separators must be a pair of strings");
    style.item_sep = sep.as_sequence()[0].as_string();
    style.key_sep = sep.as_sequence()[1].as_string();
  }
  std::string out;
  FERRUM_TRY(dump_json(v, style, out));
  return Value(std::move(out));
}

// Markup(value): a string.
Result<Value> safe(const Value& v, const CallArgs& a) {
  FERRUM_TRY(Params::none(a, "safe"));
  return Value(to_str(v));
}

const std::map<std::string, Filter, std::less<>>& filters() {
  static const std::map<std::string, Filter, std::less<>> t = {
      {"abs", &abs_filter},
      {"capitalize", &string_filter<text::capitalize>},
      {"count", &length},
      {"d", &default_filter},
      {"default", &default_filter},
      {"dictsort", &dictsort},
      {"first", &first},
      {"float", &float_filter},
      {"indent", &indent},
      {"int", &int_filter},
      {"items", &items},
      {"join", &join},
      {"last", &last},
      {"length", &length},
      {"list", &list},
      {"lower", &string_filter<text::lower>},
      {"map", &map},
      {"max", [](const Value& v, const CallArgs& a) { return min_max(v, a, true); }},
      {"min", [](const Value& v, const CallArgs& a) { return min_max(v, a, false); }},
      {"reject", [](const Value& v, const CallArgs& a) { return select(v, a, false, false); }},
      {"rejectattr", [](const Value& v, const CallArgs& a) { return select(v, a, false, true); }},
      {"replace", &replace},
      {"reverse", &reverse},
      {"round", &round_filter},
      {"safe", &safe},
      {"select", [](const Value& v, const CallArgs& a) { return select(v, a, true, false); }},
      {"selectattr", [](const Value& v, const CallArgs& a) { return select(v, a, true, true); }},
      {"sort", &sort},
      {"string", &string_filter<identity_str>},
      {"sum", &sum},
      {"title", &string_filter<jinja_title>},
      {"tojson", &tojson},
      {"trim", &trim},
      {"unique", &unique},
      {"upper", &string_filter<text::upper>},
      {"wordcount", &wordcount},
  };
  return t;
}

}  // namespace

bool is_filter(std::string_view name) { return filters().count(name) != 0; }

Result<Value> apply_filter(std::string_view name, const Value& value, const CallArgs& args) {
  const auto it = filters().find(name);
  if (it == filters().end()) return Error("unsupported filter '" + std::string(name) + "'");
  return it->second(value, args);
}

}  // namespace ferrum::jinja
