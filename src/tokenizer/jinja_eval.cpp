#include "tokenizer/jinja_eval.h"

#include <algorithm>
#include <memory>
#include <optional>

#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_ops.h"

namespace ferrum::jinja {

namespace {

class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent) : parent_(std::move(parent)) {}
  const Value* lookup(std::string_view name) const {
    for (const Scope* s = this; s; s = s->parent_.get())
      if (const Value* v = s->vars_.find(name)) return v;
    return nullptr;
  }
  void set(std::string name, Value v) { vars_.set(Value(std::move(name)), std::move(v)); }

 private:
  std::shared_ptr<Scope> parent_;
  Object vars_;
};
using ScopePtr = std::shared_ptr<Scope>;

enum class Flow { kNormal, kBreak, kContinue };

// Recursive macros must end before the native stack does.
constexpr int kMaxMacroDepth = 200;

// Adds the source position to an error from an operation that has none.
template <class T>
Result<T> at(SrcPos pos, Result<T> r) {
  if (r.ok()) return r;
  return error_at(pos, r.status().message());
}

// The values loop.changed() saw last, shared by the iterations of one loop.
using ChangedState = std::shared_ptr<std::optional<std::vector<Value>>>;

Value loop_object(size_t i, const std::vector<Value>& items, const ChangedState& changed) {
  const auto n = static_cast<int64_t>(items.size());
  const auto idx = static_cast<int64_t>(i);
  Object o;
  o.set("index", Value(idx + 1));
  o.set("index0", Value(idx));
  o.set("revindex", Value(n - idx));
  o.set("revindex0", Value(n - idx - 1));
  o.set("first", Value(idx == 0));
  o.set("last", Value(idx == n - 1));
  o.set("length", Value(n));
  o.set("depth", Value(1));
  o.set("depth0", Value(0));
  if (i > 0) o.set("previtem", items[i - 1]);
  if (idx + 1 < n) o.set("nextitem", items[i + 1]);
  o.set("cycle", Value::function("loop.cycle", [i](const CallArgs& a) -> Result<Value> {
          if (a.args.empty()) return Error("no items for cycling given");
          return a.args[i % a.args.size()];
        }));
  o.set("changed", Value::function("loop.changed", [changed](const CallArgs& a) -> Result<Value> {
          const bool same = *changed && changed->value().size() == a.args.size() &&
                            std::equal(a.args.begin(), a.args.end(), changed->value().begin(), equals);
          if (same) return Value(false);
          *changed = a.args;
          return Value(true);
        }));
  return Value::dict(std::move(o));
}

class Evaluator {
 public:
  Result<Flow> exec_body(const Body& body, const ScopePtr& scope, std::string& out) {
    for (const StmtPtr& s : body) {
      FERRUM_ASSIGN_OR_RETURN(Flow f, exec(*s, scope, out));
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

 private:
  Result<Flow> exec(const Stmt& s, const ScopePtr& scope, std::string& out) {
    switch (s.kind) {
      case Stmt::Kind::kData:
        out += static_cast<const DataStmt&>(s).text;
        return Flow::kNormal;
      case Stmt::Kind::kPrint: {
        FERRUM_ASSIGN_OR_RETURN(Value v, eval(*static_cast<const PrintStmt&>(s).expr, scope));
        out += to_str(v);
        return Flow::kNormal;
      }
      case Stmt::Kind::kIf: {
        const auto& st = static_cast<const IfStmt&>(s);
        for (const auto& [cond, body] : st.branches) {
          FERRUM_ASSIGN_OR_RETURN(Value c, eval(*cond, scope));
          if (truthy(c)) return exec_body(body, scope, out);
        }
        return exec_body(st.otherwise, scope, out);
      }
      case Stmt::Kind::kFor:
        return exec_for(static_cast<const ForStmt&>(s), scope, out);
      case Stmt::Kind::kSet: {
        const auto& st = static_cast<const SetStmt&>(s);
        FERRUM_ASSIGN_OR_RETURN(Value v, eval(*st.value, scope));
        FERRUM_TRY(assign(st.target, v, *scope, st.pos));
        return Flow::kNormal;
      }
      case Stmt::Kind::kSetBlock: {
        const auto& st = static_cast<const SetBlockStmt&>(s);
        std::string captured;
        FERRUM_TRY(exec_body(st.body, std::make_shared<Scope>(scope), captured).status());
        FERRUM_TRY(assign(st.target, Value(std::move(captured)), *scope, st.pos));
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro: {
        const auto& m = static_cast<const MacroStmt&>(s);
        // The defining scope is held weakly: the macro is stored in it, and a strong reference
        // would make a cycle.
        std::weak_ptr<Scope> defining = scope;
        scope->set(m.name,
                   Value::function(
                       m.name, [this, &m, defining](const CallArgs& a) { return call_macro(m, defining, a); },
                       true));
        return Flow::kNormal;
      }
      case Stmt::Kind::kBreak:
        return Flow::kBreak;
      case Stmt::Kind::kContinue:
        return Flow::kContinue;
      case Stmt::Kind::kScope: {
        const auto& st = static_cast<const ScopeStmt&>(s);
        auto inner = std::make_shared<Scope>(scope);
        for (const auto& [name, expr] : st.assignments) {
          FERRUM_ASSIGN_OR_RETURN(Value v, eval(*expr, scope));
          inner->set(name, std::move(v));
        }
        FERRUM_TRY(exec_body(st.body, inner, out).status());
        return Flow::kNormal;
      }
    }
    return Flow::kNormal;
  }

  Result<Flow> exec_for(const ForStmt& s, const ScopePtr& scope, std::string& out) {
    FERRUM_ASSIGN_OR_RETURN(Value iterable, eval(*s.iterable, scope));
    FERRUM_ASSIGN_OR_RETURN(std::vector<Value> items, at(s.iterable->pos, iterate(iterable)));
    if (s.filter) {
      std::vector<Value> kept;
      for (Value& item : items) {
        auto inner = std::make_shared<Scope>(scope);
        FERRUM_TRY(assign(s.target, item, *inner, s.pos));
        FERRUM_ASSIGN_OR_RETURN(Value keep, eval(*s.filter, inner));
        if (truthy(keep)) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      FERRUM_TRY(exec_body(s.otherwise, std::make_shared<Scope>(scope), out).status());
      return Flow::kNormal;
    }
    const auto changed = std::make_shared<std::optional<std::vector<Value>>>();
    for (size_t i = 0; i < items.size(); ++i) {
      auto inner = std::make_shared<Scope>(scope);
      FERRUM_TRY(assign(s.target, items[i], *inner, s.pos));
      inner->set("loop", loop_object(i, items, changed));
      FERRUM_ASSIGN_OR_RETURN(Flow f, exec_body(s.body, inner, out));
      if (f == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  Status assign(const Target& t, const Value& v, Scope& scope, SrcPos pos) {
    if (t.attribute) {
      const Value* ns = scope.lookup(t.names[0]);
      if (!ns || !ns->is_namespace()) return error_at(pos, "cannot assign attribute on non-namespace object");
      ns->namespace_attrs().set(Value(*t.attribute), v);
      return {};
    }
    if (!t.unpack) {
      scope.set(t.names[0], v);
      return {};
    }
    FERRUM_ASSIGN_OR_RETURN(std::vector<Value> items, at(pos, iterate(v)));
    if (items.size() < t.names.size())
      return error_at(pos, "not enough values to unpack (expected " + std::to_string(t.names.size()) +
                               ", got " + std::to_string(items.size()) + ")");
    if (items.size() > t.names.size())
      return error_at(pos, "too many values to unpack (expected " + std::to_string(t.names.size()) + ")");
    for (size_t i = 0; i < items.size(); ++i) scope.set(t.names[i], items[i]);
    return {};
  }

  Result<Value> call_macro(const MacroStmt& m, const std::weak_ptr<Scope>& defining, const CallArgs& a) {
    ScopePtr parent = defining.lock();
    if (!parent) return error_at(m.pos, "macro '" + m.name + "' called after its scope ended");
    if (a.args.size() > m.params.size())
      return error_at(m.pos, "macro '" + m.name + "' takes not more than " + std::to_string(m.params.size()) +
                                 " argument(s)");
    for (const auto& [k, v] : a.kwargs) {
      bool known = false;
      for (size_t i = 0; i < m.params.size(); ++i) {
        if (m.params[i].first != k) continue;
        if (i < a.args.size())
          return error_at(m.pos, "macro '" + m.name + "' got multiple values for argument '" + k + "'");
        known = true;
      }
      if (!known) return error_at(m.pos, "macro '" + m.name + "' takes no keyword argument '" + k + "'");
    }
    auto scope = std::make_shared<Scope>(parent);
    for (size_t i = 0; i < m.params.size(); ++i) {
      const auto& [name, def] = m.params[i];
      Value v = Value::undefined("parameter '" + name + "' was not provided");
      if (i < a.args.size()) {
        v = a.args[i];
      } else if (auto kw =
                     std::find_if(a.kwargs.begin(), a.kwargs.end(), [&](auto& p) { return p.first == name; });
                 kw != a.kwargs.end()) {
        v = kw->second;
      } else if (def) {
        FERRUM_ASSIGN_OR_RETURN(v, eval(*def, scope));
      }
      scope->set(name, std::move(v));
    }
    if (macro_depth_ >= kMaxMacroDepth)
      return error_at(
          m.pos, "macro '" + m.name + "' nested deeper than " + std::to_string(kMaxMacroDepth) + " calls");
    ++macro_depth_;
    std::string out;
    const Status st = exec_body(m.body, scope, out).status();
    --macro_depth_;
    FERRUM_TRY(st);
    return Value(std::move(out));
  }

  Result<CallArgs> eval_args(const Arguments& args, const ScopePtr& scope) {
    CallArgs out;
    for (const ExprPtr& e : args.args) {
      FERRUM_ASSIGN_OR_RETURN(Value v, eval(*e, scope));
      out.args.push_back(std::move(v));
    }
    for (const auto& [k, e] : args.kwargs) {
      FERRUM_ASSIGN_OR_RETURN(Value v, eval(*e, scope));
      out.kwargs.emplace_back(k, std::move(v));
    }
    return out;
  }

  Result<Value> eval(const Expr& e, const ScopePtr& scope) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return static_cast<const LiteralExpr&>(e).value;
      case Expr::Kind::kName: {
        const auto& name = static_cast<const NameExpr&>(e).name;
        const Value* v = scope->lookup(name);
        return v ? *v : Value::undefined("'" + name + "' is undefined");
      }
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        std::vector<Value> items;
        for (const ExprPtr& item : static_cast<const SequenceExpr&>(e).items) {
          FERRUM_ASSIGN_OR_RETURN(Value v, eval(*item, scope));
          items.push_back(std::move(v));
        }
        return e.kind == Expr::Kind::kList ? Value::list(std::move(items)) : Value::tuple(std::move(items));
      }
      case Expr::Kind::kDict: {
        Object o;
        for (const auto& [ke, ve] : static_cast<const DictExpr&>(e).items) {
          FERRUM_ASSIGN_OR_RETURN(Value k, eval(*ke, scope));
          if (!hashable(k)) return error_at(ke->pos, std::string("unhashable type: '") + type_name(k) + "'");
          FERRUM_ASSIGN_OR_RETURN(Value v, eval(*ve, scope));
          o.set(std::move(k), std::move(v));
        }
        return Value::dict(std::move(o));
      }
      case Expr::Kind::kAttr: {
        const auto& a = static_cast<const AttrExpr&>(e);
        FERRUM_ASSIGN_OR_RETURN(Value obj, eval(*a.object, scope));
        if (obj.is_undefined()) return error_at(a.pos, obj.undefined_hint());
        return at(a.pos, get_attr(obj, a.name));
      }
      case Expr::Kind::kItem: {
        const auto& it = static_cast<const ItemExpr&>(e);
        FERRUM_ASSIGN_OR_RETURN(Value obj, eval(*it.object, scope));
        FERRUM_ASSIGN_OR_RETURN(Value key, eval(*it.index, scope));
        if (obj.is_undefined()) return error_at(it.pos, obj.undefined_hint());
        return at(it.pos, get_item(obj, key));
      }
      case Expr::Kind::kSlice:
        return eval_slice(static_cast<const SliceExpr&>(e), scope);
      case Expr::Kind::kUnary: {
        const auto& u = static_cast<const UnaryExpr&>(e);
        FERRUM_ASSIGN_OR_RETURN(Value v, eval(*u.operand, scope));
        return at(u.pos, unary_op(u.op, v));
      }
      case Expr::Kind::kBinary:
        return eval_binary(static_cast<const BinaryExpr&>(e), scope);
      case Expr::Kind::kCompare:
        return eval_compare(static_cast<const CompareExpr&>(e), scope);
      case Expr::Kind::kCond: {
        const auto& c = static_cast<const CondExpr&>(e);
        FERRUM_ASSIGN_OR_RETURN(Value cond, eval(*c.cond, scope));
        if (truthy(cond)) return eval(*c.then, scope);
        if (c.otherwise) return eval(*c.otherwise, scope);
        return Value::undefined("the inline if-expression on line " + std::to_string(c.pos.line) +
                                " evaluated to false and no else section was defined.");
      }
      case Expr::Kind::kCall: {
        const auto& c = static_cast<const CallExpr&>(e);
        FERRUM_ASSIGN_OR_RETURN(Value fn, eval(*c.callee, scope));
        FERRUM_ASSIGN_OR_RETURN(CallArgs args, eval_args(c.arguments, scope));
        if (fn.is_undefined()) return error_at(c.pos, fn.undefined_hint());
        if (!fn.is_function())
          return error_at(c.pos, std::string("'") + type_name(fn) + "' object is not callable");
        auto result = fn.call(args);
        return fn.errors_have_position() ? std::move(result) : at(c.pos, std::move(result));
      }
      case Expr::Kind::kFilter: {
        const auto& f = static_cast<const FilterExpr&>(e);
        FERRUM_ASSIGN_OR_RETURN(Value v, eval(*f.value, scope));
        FERRUM_ASSIGN_OR_RETURN(CallArgs args, eval_args(f.arguments, scope));
        return at(f.pos, apply_filter(f.name, v, args));
      }
      case Expr::Kind::kTest: {
        const auto& t = static_cast<const TestExpr&>(e);
        FERRUM_ASSIGN_OR_RETURN(Value v, eval(*t.value, scope));
        FERRUM_ASSIGN_OR_RETURN(CallArgs args, eval_args(t.arguments, scope));
        FERRUM_ASSIGN_OR_RETURN(bool r, at(t.pos, apply_test(t.name, v, args)));
        return Value(r != t.negated);
      }
    }
    return error_at(e.pos, "unknown expression");
  }

  Result<Value> eval_slice(const SliceExpr& s, const ScopePtr& scope) {
    FERRUM_ASSIGN_OR_RETURN(Value obj, eval(*s.object, scope));
    Value parts[3] = {Value::none(), Value::none(), Value::none()};
    const ExprPtr* exprs[3] = {&s.start, &s.stop, &s.step};
    for (int i = 0; i < 3; ++i) {
      if (!*exprs[i]) continue;
      FERRUM_ASSIGN_OR_RETURN(parts[i], eval(**exprs[i], scope));
    }
    if (obj.is_undefined()) return error_at(s.pos, obj.undefined_hint());
    return at(s.pos, slice(obj, parts[0], parts[1], parts[2]));
  }

  Result<Value> eval_binary(const BinaryExpr& b, const ScopePtr& scope) {
    FERRUM_ASSIGN_OR_RETURN(Value l, eval(*b.left, scope));
    if (b.op == BinaryOp::kAnd) return truthy(l) ? eval(*b.right, scope) : Result<Value>(l);
    if (b.op == BinaryOp::kOr) return truthy(l) ? Result<Value>(l) : eval(*b.right, scope);
    FERRUM_ASSIGN_OR_RETURN(Value r, eval(*b.right, scope));
    return at(b.pos, binary_op(b.op, l, r));
  }

  Result<Value> eval_compare(const CompareExpr& c, const ScopePtr& scope) {
    FERRUM_ASSIGN_OR_RETURN(Value left, eval(*c.first, scope));
    for (const auto& [op, expr] : c.rest) {
      FERRUM_ASSIGN_OR_RETURN(Value right, eval(*expr, scope));
      FERRUM_ASSIGN_OR_RETURN(bool r, at(expr->pos, compare_op(op, left, right)));
      if (!r) return Value(false);
      left = std::move(right);
    }
    return Value(true);
  }

  static Result<bool> compare_op(CompareOp op, const Value& a, const Value& b) {
    switch (op) {
      case CompareOp::kEq:
        return equals(a, b);
      case CompareOp::kNe:
        return !equals(a, b);
      case CompareOp::kIn:
        return contains(b, a);
      case CompareOp::kNotIn: {
        FERRUM_ASSIGN_OR_RETURN(bool in, contains(b, a));
        return !in;
      }
      default:
        break;
    }
    if (a.is_undefined()) return Error(a.undefined_hint());
    if (b.is_undefined()) return Error(b.undefined_hint());
    FERRUM_ASSIGN_OR_RETURN(int c, compare(a, b));
    switch (op) {
      case CompareOp::kLt:
        return c < 0;
      case CompareOp::kLe:
        return c <= 0;
      case CompareOp::kGt:
        return c > 0;
      default:
        return c >= 0;
    }
  }

  int macro_depth_ = 0;
};

}  // namespace

Status render(const Body& body, const Object& context, std::string& out) {
  auto global_scope = std::make_shared<Scope>(nullptr);
  for (const auto& [k, v] : globals().items()) global_scope->set(k.as_string(), v);
  auto context_scope = std::make_shared<Scope>(global_scope);
  for (const auto& [k, v] : context.items()) {
    if (!k.is_string())
      return Error(std::string("template variable names must be strings, not ") + type_name(k));
    context_scope->set(k.as_string(), v);
  }
  Evaluator ev;
  return ev.exec_body(body, std::make_shared<Scope>(context_scope), out).status();
}

}  // namespace ferrum::jinja
