#include "tokenizer/jinja_ops.h"

#include <algorithm>
#include <cmath>

#include "tokenizer/jinja_text.h"

namespace ferrum::jinja {

namespace {

Status undefined_error(const Value& v) { return Error(v.undefined_hint()); }

Status operand_error(const char* op, const Value& a, const Value& b) {
  return Error(std::string("unsupported operand type(s) for ") + op + ": '" + type_name(a) + "' and '" +
               type_name(b) + "'");
}

Result<Value> checked_int(bool overflow, int64_t v) {
  if (overflow) return Error("integer overflow (Python integers are unbounded, ours are 64-bit)");
  return Value(v);
}

Result<Value> repeat(const Value& seq, int64_t n) {
  const size_t unit = seq.is_string() ? seq.as_string().size() : seq.as_sequence().size();
  if (n > 0 && unit > 0 && static_cast<uint64_t>(n) > (uint64_t{1} << 28) / unit)
    return Error("repetition result too large");
  if (seq.is_string()) {
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += seq.as_string();
    return Value(std::move(out));
  }
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.as_sequence().begin(), seq.as_sequence().end());
  return seq.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

// Python's float floor division and modulo (the result of % takes the divisor's sign).
std::pair<double, double> float_divmod(double x, double y) {
  double mod = std::fmod(x, y);
  double div = (x - mod) / y;
  if (mod != 0) {
    if ((y < 0) != (mod < 0)) {
      mod += y;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, y);
  }
  double floordiv = 0;
  if (div != 0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = std::copysign(0.0, x / y);
  }
  return {floordiv, mod};
}

Result<Value> int_pow(int64_t base, int64_t exp) {
  int64_t result = 1;
  bool overflow = false;
  while (exp > 0) {
    if (exp & 1) overflow |= __builtin_mul_overflow(result, base, &result);
    exp >>= 1;
    if (exp > 0) overflow |= __builtin_mul_overflow(base, base, &base);
  }
  return checked_int(overflow, result);
}

Result<Value> arithmetic(BinaryOp op, const Value& a, const Value& b) {
  const bool ints = !a.is_float() && !b.is_float();
  const double x = a.as_double(), y = b.as_double();
  const int64_t i = ints ? a.as_int() : 0, j = ints ? b.as_int() : 0;
  int64_t r = 0;
  switch (op) {
    case BinaryOp::kAdd:
      if (ints) {
        const bool overflow = __builtin_add_overflow(i, j, &r);
        return checked_int(overflow, r);
      }
      return Value(x + y);
    case BinaryOp::kSub:
      if (ints) {
        const bool overflow = __builtin_sub_overflow(i, j, &r);
        return checked_int(overflow, r);
      }
      return Value(x - y);
    case BinaryOp::kMul:
      if (ints) {
        const bool overflow = __builtin_mul_overflow(i, j, &r);
        return checked_int(overflow, r);
      }
      return Value(x * y);
    case BinaryOp::kDiv:
      if (y == 0) return Error("division by zero");
      return Value(x / y);
    case BinaryOp::kFloorDiv:
    case BinaryOp::kMod:
      if (ints) {
        if (j == 0) return Error("integer division or modulo by zero");
        if (i == INT64_MIN && j == -1) return checked_int(true, 0);
        int64_t q = i / j, m = i % j;
        if (m != 0 && ((m < 0) != (j < 0))) {
          --q;
          m += j;
        }
        return Value(op == BinaryOp::kFloorDiv ? q : m);
      } else {
        if (y == 0) return Error(op == BinaryOp::kMod ? "float modulo" : "float floor division by zero");
        const auto [q, m] = float_divmod(x, y);
        return Value(op == BinaryOp::kFloorDiv ? q : m);
      }
    case BinaryOp::kPow:
      if (ints && j >= 0) return int_pow(i, j);
      if (x == 0 && y < 0) return Error("0.0 cannot be raised to a negative power");
      return Value(std::pow(x, y));
    default:
      return Error("not an arithmetic operator");
  }
}

const char* op_symbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd:
      return "+";
    case BinaryOp::kSub:
      return "-";
    case BinaryOp::kMul:
      return "*";
    case BinaryOp::kDiv:
      return "/";
    case BinaryOp::kFloorDiv:
      return "//";
    case BinaryOp::kMod:
      return "%";
    case BinaryOp::kPow:
      return "** or pow()";
    default:
      return "?";
  }
}

// Python's slice index clamping (PySlice_AdjustIndices).
int64_t clamp_index(int64_t idx, int64_t len, bool negative_step) {
  if (idx < 0) {
    idx += len;
    if (idx < 0) idx = negative_step ? -1 : 0;
  } else if (idx >= len) {
    idx = negative_step ? len - 1 : len;
  }
  return idx;
}

}  // namespace

Result<Params> Params::bind(const CallArgs& a, std::string_view fn,
                            std::initializer_list<std::string_view> names) {
  Params p;
  p.fn_ = std::string(fn);
  p.names_.assign(names.begin(), names.end());
  p.values_.resize(names.size());
  if (a.args.size() > names.size())
    return Error(p.fn_ + "() takes at most " + std::to_string(names.size()) + " argument(s) (" +
                 std::to_string(a.args.size()) + " given)");
  for (size_t i = 0; i < a.args.size(); ++i) p.values_[i] = a.args[i];
  for (const auto& [k, v] : a.kwargs) {
    const auto it = std::find(p.names_.begin(), p.names_.end(), k);
    if (it == p.names_.end()) return Error(p.fn_ + "() got an unexpected keyword argument '" + k + "'");
    auto& slot = p.values_[static_cast<size_t>(it - p.names_.begin())];
    if (slot) return Error(p.fn_ + "() got multiple values for argument '" + k + "'");
    slot = v;
  }
  return p;
}

Status Params::none(const CallArgs& a, std::string_view fn) {
  if (!a.args.empty() || !a.kwargs.empty()) return Error(std::string(fn) + "() takes no arguments");
  return {};
}

const Value& Params::get(size_t i) const {
  static const Value kAbsent;
  return values_[i] ? *values_[i] : kAbsent;
}

Result<int64_t> Params::integer(size_t i, int64_t def) const {
  if (!has(i)) return def;
  const Value& v = *values_[i];
  if (v.is_int() || v.is_bool()) return v.as_int();
  return Error(fn_ + "(): argument '" + std::string(names_[i]) + "' must be an integer, not '" +
               type_name(v) + "'");
}

Result<std::optional<std::string>> Params::opt_string(size_t i) const {
  if (is_none(i)) return std::optional<std::string>();
  const Value& v = *values_[i];
  if (!v.is_string())
    return Error(fn_ + "(): argument '" + std::string(names_[i]) + "' must be str, not '" + type_name(v) +
                 "'");
  return std::optional<std::string>(v.as_string());
}

Result<std::string> Params::string(size_t i, std::string def) const {
  FERRUM_ASSIGN_OR_RETURN(auto s, opt_string(i));
  return s ? *s : def;
}

Result<std::vector<Value>> iterate(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return std::vector<Value>();
    case Value::Type::kArray:
      return v.as_sequence();
    case Value::Type::kIterator:
      return v.take_rest();
    case Value::Type::kObject: {
      std::vector<Value> keys;
      for (const auto& [k, _] : v.as_dict().items()) keys.push_back(k);
      return keys;
    }
    case Value::Type::kString: {
      std::vector<Value> chars;
      for (char32_t c : text::decode(v.as_string())) chars.emplace_back(text::encode(std::u32string(1, c)));
      return chars;
    }
    default:
      return Error(std::string("'") + type_name(v) + "' object is not iterable");
  }
}

Result<bool> contains(const Value& container, const Value& item) {
  switch (container.type()) {
    case Value::Type::kUndefined:
      return false;
    case Value::Type::kString:
      if (!item.is_string())
        return Error(std::string("'in <string>' requires string as left operand, not ") + type_name(item));
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Type::kArray:
      return std::any_of(container.as_sequence().begin(), container.as_sequence().end(),
                         [&](const Value& e) { return equals(e, item); });
    case Value::Type::kIterator:  // consumes up to the match, as Python's `in` on a generator
      while (auto e = container.take_next())
        if (equals(*e, item)) return true;
      return false;
    case Value::Type::kObject:
      if (!hashable(item)) return Error(std::string("unhashable type: '") + type_name(item) + "'");
      return container.as_dict().find_key(item) != nullptr;
    default:
      return Error(std::string("argument of type '") + type_name(container) + "' is not iterable");
  }
}

Result<Value> binary_op(BinaryOp op, const Value& a, const Value& b) {
  if (op == BinaryOp::kConcat) return Value(to_str(a) + to_str(b));
  if (a.is_undefined()) return undefined_error(a);
  if (b.is_undefined()) return undefined_error(b);
  if (a.is_number() && b.is_number()) return arithmetic(op, a, b);
  const bool a_int = a.is_int() || a.is_bool(), b_int = b.is_int() || b.is_bool();
  switch (op) {
    case BinaryOp::kAdd:
      if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
      if (a.is_sequence() && b.is_sequence() && a.is_tuple() == b.is_tuple()) {
        std::vector<Value> out = a.as_sequence();
        out.insert(out.end(), b.as_sequence().begin(), b.as_sequence().end());
        return a.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
      }
      if (a.is_string() || a.is_sequence())
        return Error(std::string("can only concatenate ") + type_name(a) + " (not \"" + type_name(b) +
                     "\") to " + type_name(a));
      break;
    case BinaryOp::kMul:
      if ((a.is_string() || a.is_sequence()) && b_int) return repeat(a, b.as_int());
      if (a_int && (b.is_string() || b.is_sequence())) return repeat(b, a.as_int());
      break;
    case BinaryOp::kMod:
      if (a.is_string()) return Error("printf-style string formatting with % is not supported");
      break;
    default:
      break;
  }
  return operand_error(op_symbol(op), a, b);
}

Result<Value> unary_op(UnaryOp op, const Value& v) {
  if (op == UnaryOp::kNot) return Value(!truthy(v));
  if (v.is_undefined()) return undefined_error(v);
  const char* sym = op == UnaryOp::kNeg ? "-" : "+";
  if (!v.is_number())
    return Error(std::string("bad operand type for unary ") + sym + ": '" + type_name(v) + "'");
  if (op == UnaryOp::kPos) return v.is_float() ? v : Value(v.as_int());
  if (v.is_float()) return Value(-v.as_double());
  if (v.as_int() == INT64_MIN) return checked_int(true, 0);
  return Value(-v.as_int());
}

Result<Value> slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  auto index = [](const Value& v, const char* what) -> Result<std::optional<int64_t>> {
    if (v.is_none() || v.is_undefined()) return std::optional<int64_t>();
    if (v.is_int() || v.is_bool()) return std::optional<int64_t>(v.as_int());
    return Error(std::string("slice ") + what + " must be an integer or None, not '" + type_name(v) + "'");
  };
  FERRUM_ASSIGN_OR_RETURN(auto b, index(start, "start"));
  FERRUM_ASSIGN_OR_RETURN(auto e, index(stop, "stop"));
  FERRUM_ASSIGN_OR_RETURN(auto s, index(step, "step"));
  const int64_t st = s.value_or(1);
  if (st == 0) return Error("slice step cannot be zero");
  std::u32string chars;
  const std::vector<Value>* items = nullptr;
  if (obj.is_string()) {
    chars = text::decode(obj.as_string());
  } else if (obj.is_sequence()) {
    items = &obj.as_sequence();
  } else {
    // jinja2 slices with Python's own [] (not its forgiving getitem), so other types are errors.
    if (obj.is_dict()) return Error("unhashable type: 'slice'");
    return Error(std::string("'") + type_name(obj) + "' object is not subscriptable");
  }
  const auto len = static_cast<int64_t>(items ? items->size() : chars.size());
  const bool neg = st < 0;
  const int64_t from = b ? clamp_index(*b, len, neg) : (neg ? len - 1 : 0);
  const int64_t to = e ? clamp_index(*e, len, neg) : (neg ? -1 : len);
  std::vector<Value> out_items;
  std::u32string out_chars;
  for (int64_t i = from; neg ? i > to : i < to; i += st) {
    if (items) {
      out_items.push_back((*items)[static_cast<size_t>(i)]);
    } else {
      out_chars.push_back(chars[static_cast<size_t>(i)]);
    }
  }
  if (!items) return Value(text::encode(out_chars));
  return obj.is_tuple() ? Value::tuple(std::move(out_items)) : Value::list(std::move(out_items));
}

}  // namespace ferrum::jinja
