// Syntax tree of a parsed template. Nodes carry their source position for error messages.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_lexer.h"
#include "tokenizer/jinja_value.h"

namespace ferrum::jinja {

struct Expr {
  enum class Kind {
    kLiteral,
    kName,
    kList,
    kTuple,
    kDict,
    kAttr,
    kItem,
    kSlice,
    kUnary,
    kBinary,
    kCompare,
    kCond,
    kCall,
    kFilter,
    kTest
  };
  Expr(Kind k, SrcPos p) : kind(k), pos(p) {}
  virtual ~Expr() = default;
  Kind kind;
  SrcPos pos;
};
using ExprPtr = std::unique_ptr<Expr>;

struct LiteralExpr : Expr {
  LiteralExpr(SrcPos p, Value v) : Expr(Kind::kLiteral, p), value(std::move(v)) {}
  Value value;
};

struct NameExpr : Expr {
  NameExpr(SrcPos p, std::string n) : Expr(Kind::kName, p), name(std::move(n)) {}
  std::string name;
};

// List and tuple displays.
struct SequenceExpr : Expr {
  SequenceExpr(Kind k, SrcPos p) : Expr(k, p) {}
  std::vector<ExprPtr> items;
};

struct DictExpr : Expr {
  explicit DictExpr(SrcPos p) : Expr(Kind::kDict, p) {}
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
};

// obj.name
struct AttrExpr : Expr {
  AttrExpr(SrcPos p, ExprPtr o, std::string n)
      : Expr(Kind::kAttr, p), object(std::move(o)), name(std::move(n)) {}
  ExprPtr object;
  std::string name;
};

// obj[index]
struct ItemExpr : Expr {
  ItemExpr(SrcPos p, ExprPtr o, ExprPtr i)
      : Expr(Kind::kItem, p), object(std::move(o)), index(std::move(i)) {}
  ExprPtr object;
  ExprPtr index;
};

// obj[start:stop:step]; absent parts are null.
struct SliceExpr : Expr {
  SliceExpr(SrcPos p, ExprPtr o) : Expr(Kind::kSlice, p), object(std::move(o)) {}
  ExprPtr object;
  ExprPtr start, stop, step;
};

enum class UnaryOp { kNeg, kPos, kNot };
struct UnaryExpr : Expr {
  UnaryExpr(SrcPos p, UnaryOp o, ExprPtr e) : Expr(Kind::kUnary, p), op(o), operand(std::move(e)) {}
  UnaryOp op;
  ExprPtr operand;
};

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow, kConcat, kAnd, kOr };
struct BinaryExpr : Expr {
  BinaryExpr(SrcPos p, BinaryOp o, ExprPtr l, ExprPtr r)
      : Expr(Kind::kBinary, p), op(o), left(std::move(l)), right(std::move(r)) {}
  BinaryOp op;
  ExprPtr left, right;
};

enum class CompareOp { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };
// a < b <= c: Python chains comparisons.
struct CompareExpr : Expr {
  CompareExpr(SrcPos p, ExprPtr f) : Expr(Kind::kCompare, p), first(std::move(f)) {}
  ExprPtr first;
  std::vector<std::pair<CompareOp, ExprPtr>> rest;
};

// a if cond else b; without else, a false condition gives undefined.
struct CondExpr : Expr {
  CondExpr(SrcPos p, ExprPtr c, ExprPtr t, ExprPtr e)
      : Expr(Kind::kCond, p), cond(std::move(c)), then(std::move(t)), otherwise(std::move(e)) {}
  ExprPtr cond, then, otherwise;
};

struct Arguments {
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct CallExpr : Expr {
  CallExpr(SrcPos p, ExprPtr f) : Expr(Kind::kCall, p), callee(std::move(f)) {}
  ExprPtr callee;
  Arguments arguments;
};

// value | name(args)
struct FilterExpr : Expr {
  FilterExpr(SrcPos p, ExprPtr v, std::string n)
      : Expr(Kind::kFilter, p), value(std::move(v)), name(std::move(n)) {}
  ExprPtr value;
  std::string name;
  Arguments arguments;
};

// value is [not] name(args)
struct TestExpr : Expr {
  TestExpr(SrcPos p, ExprPtr v, std::string n)
      : Expr(Kind::kTest, p), value(std::move(v)), name(std::move(n)) {}
  ExprPtr value;
  std::string name;
  Arguments arguments;
  bool negated = false;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind { kData, kPrint, kIf, kFor, kSet, kSetBlock, kMacro, kBreak, kContinue, kScope };
  Stmt(Kind k, SrcPos p) : kind(k), pos(p) {}
  virtual ~Stmt() = default;
  Kind kind;
  SrcPos pos;
};

struct DataStmt : Stmt {
  DataStmt(SrcPos p, std::string t) : Stmt(Kind::kData, p), text(std::move(t)) {}
  std::string text;
};

struct PrintStmt : Stmt {
  PrintStmt(SrcPos p, ExprPtr e) : Stmt(Kind::kPrint, p), expr(std::move(e)) {}
  ExprPtr expr;
};

struct IfStmt : Stmt {
  explicit IfStmt(SrcPos p) : Stmt(Kind::kIf, p) {}
  std::vector<std::pair<ExprPtr, Body>> branches;  // if, then each elif
  Body otherwise;
};

// Where `set` and `for` store: one name, several names to unpack, or a namespace attribute.
struct Target {
  std::vector<std::string> names;
  std::optional<std::string> attribute;  // set ns.attr = ...: names[0] is the namespace
  bool unpack = false;                   // a, b = ... (also for a one-element tuple)
};

struct ForStmt : Stmt {
  explicit ForStmt(SrcPos p) : Stmt(Kind::kFor, p) {}
  Target target;
  ExprPtr iterable;
  ExprPtr filter;  // for x in xs if cond
  Body body;
  Body otherwise;
};

struct SetStmt : Stmt {
  SetStmt(SrcPos p, Target t, ExprPtr v) : Stmt(Kind::kSet, p), target(std::move(t)), value(std::move(v)) {}
  Target target;
  ExprPtr value;
};

// {% set x %}...{% endset %}
struct SetBlockStmt : Stmt {
  SetBlockStmt(SrcPos p, Target t) : Stmt(Kind::kSetBlock, p), target(std::move(t)) {}
  Target target;
  Body body;
};

struct MacroStmt : Stmt {
  MacroStmt(SrcPos p, std::string n) : Stmt(Kind::kMacro, p), name(std::move(n)) {}
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // default expression or null
  Body body;
};

struct LoopControlStmt : Stmt {
  using Stmt::Stmt;
};

// A body run in its own variable scope, after binding `assignments` there: {% with %}, and
// HF's {% generation %} (which renders its body unchanged).
struct ScopeStmt : Stmt {
  explicit ScopeStmt(SrcPos p) : Stmt(Kind::kScope, p) {}
  std::vector<std::pair<std::string, ExprPtr>> assignments;
  Body body;
};

}  // namespace ferrum::jinja
