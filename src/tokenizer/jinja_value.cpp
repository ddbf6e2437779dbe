#include "tokenizer/jinja_value.h"

#include <algorithm>
#include <cmath>

#include "tokenizer/jinja_text.h"

namespace ferrum::jinja {

struct Value::Namespace {
  Object attrs;
};

struct Value::Iter {
  std::vector<Value> items;
  size_t next = 0;
};

const Value* Object::find_key(const Value& key) const {
  for (const auto& [k, v] : items_)
    if (equals(k, key)) return &v;
  return nullptr;
}

const Value* Object::find(std::string_view key) const {
  for (const auto& [k, v] : items_)
    if (k.is_string() && k.as_string() == key) return &v;
  return nullptr;
}

void Object::set(Value key, Value value) {
  for (auto& [k, v] : items_) {
    if (equals(k, key)) {
      v = std::move(value);
      return;
    }
  }
  items_.emplace_back(std::move(key), std::move(value));
}

bool hashable(const Value& v) {
  if (v.is_dict() || (v.is_sequence() && !v.is_tuple())) return false;
  if (v.is_tuple())
    for (const Value& e : v.as_sequence())
      if (!hashable(e)) return false;
  return true;
}

Value Value::undefined(std::string hint) {
  Value v;
  v.v_ = Undef{std::move(hint)};
  return v;
}

Value Value::none() {
  Value v;
  v.v_ = nullptr;
  return v;
}

Value Value::list(std::vector<Value> items) {
  Value v;
  v.v_ = std::make_shared<const Seq>(Seq{std::move(items), false});
  return v;
}

Value Value::tuple(std::vector<Value> items) {
  Value v;
  v.v_ = std::make_shared<const Seq>(Seq{std::move(items), true});
  return v;
}

Value Value::dict(Object o) {
  Value v;
  v.v_ = std::make_shared<const Object>(std::move(o));
  return v;
}

Value Value::new_namespace(Object attrs) {
  Value v;
  v.v_ = std::make_shared<Namespace>(Namespace{std::move(attrs)});
  return v;
}

Value Value::function(std::string name, NativeFunction fn, bool errors_have_position) {
  Value v;
  v.v_ = std::make_shared<const Fn>(Fn{std::move(name), std::move(fn), errors_have_position});
  return v;
}

Value Value::iterator(std::vector<Value> items) {
  Value v;
  v.v_ = std::make_shared<Iter>(Iter{std::move(items), 0});
  return v;
}

Object& Value::namespace_attrs() const { return std::get<kNs>(v_)->attrs; }

std::vector<Value> Value::take_rest() const {
  Iter& it = *std::get<kIter>(v_);
  std::vector<Value> rest(it.items.begin() + static_cast<std::ptrdiff_t>(it.next), it.items.end());
  it.next = it.items.size();
  return rest;
}

std::optional<Value> Value::take_next() const {
  Iter& it = *std::get<kIter>(v_);
  if (it.next == it.items.size()) return std::nullopt;
  return it.items[it.next++];
}

const void* Value::identity() const {
  switch (type()) {
    case Type::kArray:
      return std::get<kSeq>(v_).get();
    case Type::kObject:
      return std::get<kDict>(v_).get();
    case Type::kNamespace:
      return std::get<kNs>(v_).get();
    case Type::kFunction:
      return std::get<kFn>(v_).get();
    case Type::kIterator:
      return std::get<kIter>(v_).get();
    default:
      return nullptr;
  }
}

const char* type_name(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return "Undefined";
    case Value::Type::kNone:
      return "NoneType";
    case Value::Type::kBool:
      return "bool";
    case Value::Type::kInt:
      return "int";
    case Value::Type::kFloat:
      return "float";
    case Value::Type::kString:
      return "str";
    case Value::Type::kArray:
      return v.is_tuple() ? "tuple" : "list";
    case Value::Type::kObject:
      return "dict";
    case Value::Type::kNamespace:
      return "Namespace";
    case Value::Type::kFunction:
      return "function";
    case Value::Type::kIterator:
      return "generator";
  }
  return "?";
}

bool truthy(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
    case Value::Type::kNone:
      return false;
    case Value::Type::kBool:
      return v.as_bool();
    case Value::Type::kInt:
      return v.as_int() != 0;
    case Value::Type::kFloat:
      return v.as_double() != 0.0;
    case Value::Type::kString:
      return !v.as_string().empty();
    case Value::Type::kArray:
      return !v.as_sequence().empty();
    case Value::Type::kObject:
      return v.as_dict().size() != 0;
    case Value::Type::kNamespace:
    case Value::Type::kFunction:
    case Value::Type::kIterator:
      return true;
  }
  return false;
}

std::string to_str(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return "";
    case Value::Type::kString:
      return v.as_string();
    case Value::Type::kNamespace:
      return "<Namespace " + to_repr(Value::dict(v.namespace_attrs())) + ">";
    case Value::Type::kFunction:
      return "<function " + v.function_name() + ">";
    case Value::Type::kIterator:
      return "<generator object>";  // CPython adds the object's address
    default:
      return to_repr(v);
  }
}

std::string to_repr(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return "Undefined";
    case Value::Type::kNone:
      return "None";
    case Value::Type::kBool:
      return v.as_bool() ? "True" : "False";
    case Value::Type::kInt:
      return std::to_string(v.as_int());
    case Value::Type::kFloat:
      return text::float_repr(v.as_double());
    case Value::Type::kString:
      return text::repr(v.as_string());
    case Value::Type::kArray: {
      const auto& items = v.as_sequence();
      std::string out = v.is_tuple() ? "(" : "[";
      for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + to_repr(items[i]);
      if (v.is_tuple() && items.size() == 1) out += ",";
      return out + (v.is_tuple() ? ")" : "]");
    }
    case Value::Type::kObject: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, val] : v.as_dict().items()) {
        out += (first ? "" : ", ") + to_repr(k) + ": " + to_repr(val);
        first = false;
      }
      return out + "}";
    }
    case Value::Type::kNamespace:
    case Value::Type::kFunction:
    case Value::Type::kIterator:
      return to_str(v);
  }
  return "";
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Value::Type::kUndefined:
    case Value::Type::kNone:
      return true;
    case Value::Type::kString:
      return a.as_string() == b.as_string();
    case Value::Type::kArray: {
      if (a.is_tuple() != b.is_tuple()) return false;
      const auto &x = a.as_sequence(), &y = b.as_sequence();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equals(x[i], y[i])) return false;
      return true;
    }
    case Value::Type::kObject: {
      const auto &x = a.as_dict(), &y = b.as_dict();
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x.items()) {
        const Value* other = y.find_key(k);
        if (!other || !equals(v, *other)) return false;
      }
      return true;
    }
    default:
      return a.identity() == b.identity();
  }
}

Result<int> compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      const double x = a.as_double(), y = b.as_double();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    const int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_sequence() && b.is_sequence() && a.is_tuple() == b.is_tuple()) {
    const auto &x = a.as_sequence(), &y = b.as_sequence();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals(x[i], y[i])) continue;
      return compare(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  return Error(std::string("'<' not supported between instances of '") + type_name(a) + "' and '" +
               type_name(b) + "'");
}

namespace {

Status dump_json_at(const Value& v, const JsonStyle& style, int level, std::string& out) {
  auto newline = [&](int lvl) {
    out.push_back('\n');
    for (int i = 0; i < lvl; ++i) out += *style.indent;
  };
  switch (v.type()) {
    case Value::Type::kNone:
      out += "null";
      return {};
    case Value::Type::kBool:
      out += v.as_bool() ? "true" : "false";
      return {};
    case Value::Type::kInt:
      out += std::to_string(v.as_int());
      return {};
    case Value::Type::kFloat: {
      const double d = v.as_double();
      out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d < 0 ? "-Infinity" : "Infinity") : text::float_repr(d);
      return {};
    }
    case Value::Type::kString:
      text::append_json_string(out, v.as_string(), style.ensure_ascii);
      return {};
    case Value::Type::kArray: {
      const auto& items = v.as_sequence();
      if (items.empty()) {
        out += "[]";
        return {};
      }
      out.push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += style.item_sep;
        if (style.indent) newline(level + 1);
        FERRUM_TRY(dump_json_at(items[i], style, level + 1, out));
      }
      if (style.indent) newline(level);
      out.push_back(']');
      return {};
    }
    case Value::Type::kObject: {
      // json.dumps turns int, float, bool and None keys into strings, after sorting the originals.
      struct Entry {
        const Value* key;
        std::string text;
        const Value* value;
      };
      std::vector<Entry> items;
      for (const auto& [k, val] : v.as_dict().items()) {
        std::string text;
        if (k.is_string()) {
          text = k.as_string();
        } else if (k.is_number() || k.is_none()) {
          FERRUM_TRY(dump_json_at(k, style, level, text));
        } else {
          return Error(std::string("keys must be str, int, float, bool or None, not ") + type_name(k));
        }
        items.push_back({&k, std::move(text), &val});
      }
      if (items.empty()) {
        out += "{}";
        return {};
      }
      if (style.sort_keys)
        FERRUM_TRY(sort_by_key(
            items, [](const Entry& e) -> const Value& { return *e.key; }, false));
      out.push_back('{');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += style.item_sep;
        if (style.indent) newline(level + 1);
        text::append_json_string(out, items[i].text, style.ensure_ascii);
        out += style.key_sep;
        FERRUM_TRY(dump_json_at(*items[i].value, style, level + 1, out));
      }
      if (style.indent) newline(level);
      out.push_back('}');
      return {};
    }
    default:
      return Error(std::string("Object of type ") + type_name(v) + " is not JSON serializable");
  }
}

}  // namespace

Status dump_json(const Value& v, const JsonStyle& style, std::string& out) {
  return dump_json_at(v, style, 0, out);
}

Value from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const auto u = j.get<uint64_t>();
      return u <= static_cast<uint64_t>(INT64_MAX) ? Value(static_cast<int64_t>(u))
                                                   : Value(static_cast<double>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json(e));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Object o;
      for (const auto& [k, e] : j.items()) o.set(Value(k), from_json(e));
      return Value::dict(std::move(o));
    }
    default:
      return Value::none();  // binary and discarded values do not come out of JSON text
  }
}

Result<nlohmann::ordered_json> to_json(const Value& v) {
  switch (v.type()) {
    case Value::Type::kNone:
      return nlohmann::ordered_json(nullptr);
    case Value::Type::kBool:
      return nlohmann::ordered_json(v.as_bool());
    case Value::Type::kInt:
      return nlohmann::ordered_json(v.as_int());
    case Value::Type::kFloat:
      return nlohmann::ordered_json(v.as_double());
    case Value::Type::kString:
      return nlohmann::ordered_json(v.as_string());
    case Value::Type::kArray: {
      auto arr = nlohmann::ordered_json::array();
      for (const auto& e : v.as_sequence()) {
        FERRUM_ASSIGN_OR_RETURN(auto j, to_json(e));
        arr.push_back(std::move(j));
      }
      return arr;
    }
    case Value::Type::kObject: {
      auto obj = nlohmann::ordered_json::object();
      for (const auto& [k, e] : v.as_dict().items()) {
        if (!k.is_string())
          return Error(std::string("a dict with a ") + type_name(k) + " key has no JSON form");
        FERRUM_ASSIGN_OR_RETURN(auto j, to_json(e));
        obj[k.as_string()] = std::move(j);
      }
      return obj;
    }
    default:
      return Error(std::string("a ") + type_name(v) + " value has no JSON form");
  }
}

}  // namespace ferrum::jinja
