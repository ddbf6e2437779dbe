#include "tokenizer/jinja_parser.h"

#include <algorithm>
#include <initializer_list>
#include <string_view>

#include "tokenizer/jinja_builtins.h"

namespace ferrum::jinja {

namespace {

using Names = std::initializer_list<std::string_view>;

bool contains(Names names, std::string_view n) {
  return std::find(names.begin(), names.end(), n) != names.end();
}

std::string join_names(Names names) {
  std::string out;
  for (auto n : names) out += (out.empty() ? "'" : " or '") + std::string(n) + "'";
  return out;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  Result<Body> parse_template() { return parse_body({}, "", {}); }

 private:
  // ---- token helpers

  const Token& cur() const { return toks_[i_]; }
  const Token& peek() const { return toks_[std::min(i_ + 1, toks_.size() - 1)]; }
  void advance() {
    if (i_ + 1 < toks_.size()) ++i_;
  }
  bool at(Tok t) const { return cur().type == t; }
  bool at_name(std::string_view n) const { return at(Tok::kName) && cur().text == n; }
  Status fail(const std::string& msg) const { return error_at(cur().pos, msg); }
  Status unexpected(const std::string& wanted) const {
    return fail("expected " + wanted + ", got " + describe(cur()));
  }
  Status expect(Tok t, const char* what) {
    if (!at(t)) return unexpected(what);
    advance();
    return {};
  }
  Status expect_block_end() { return expect(Tok::kBlockEnd, "end of statement block '%}'"); }
  Result<std::string> expect_name() {
    if (!at(Tok::kName)) return unexpected("a name");
    std::string n = cur().text;
    advance();
    return n;
  }

  // ---- statements

  // Statements up to a `{% name %}` tag with one of `end_names`, which is left as the current token.
  // With no end names, up to the end of the template.
  Result<Body> parse_body(Names end_names, std::string_view opener, SrcPos opener_pos) {
    Body body;
    while (true) {
      switch (cur().type) {
        case Tok::kData:
          body.push_back(std::make_unique<DataStmt>(cur().pos, cur().text));
          advance();
          break;
        case Tok::kVariableBegin: {
          const SrcPos pos = cur().pos;
          advance();
          FERRUM_ASSIGN_OR_RETURN(ExprPtr e, parse_tuple(true, {}, false));
          FERRUM_TRY(expect(Tok::kVariableEnd, "end of print statement '}}'"));
          body.push_back(std::make_unique<PrintStmt>(pos, std::move(e)));
          break;
        }
        case Tok::kBlockBegin:
          advance();
          if (at(Tok::kName) && contains(end_names, cur().text)) return body;
          {
            FERRUM_ASSIGN_OR_RETURN(StmtPtr s, parse_statement(end_names));
            body.push_back(std::move(s));
          }
          break;
        case Tok::kEof:
          if (end_names.size() == 0) return body;
          return fail("unexpected end of template: expected " + join_names(end_names) + " to close '" +
                      std::string(opener) + "' from line " + std::to_string(opener_pos.line));
        default:
          return unexpected("template data or a tag");
      }
    }
  }

  Result<StmtPtr> parse_statement(Names enclosing_ends) {
    if (!at(Tok::kName)) return unexpected("a tag name");
    const std::string& tag = cur().text;
    if (tag == "for") return parse_for();
    if (tag == "if") return parse_if();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "with") return parse_scope("endwith", true);
    if (tag == "generation") return parse_scope("endgeneration", false);
    if (tag == "print") {
      const SrcPos pos = cur().pos;
      advance();
      FERRUM_ASSIGN_OR_RETURN(ExprPtr e, parse_tuple(true, {}, false));
      FERRUM_TRY(expect_block_end());
      return StmtPtr(std::make_unique<PrintStmt>(pos, std::move(e)));
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) return fail("'" + tag + "' outside of a for loop");
      auto s = std::make_unique<LoopControlStmt>(tag == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue,
                                                 cur().pos);
      advance();
      FERRUM_TRY(expect_block_end());
      return StmtPtr(std::move(s));
    }
    if (contains(
            {"block", "extends", "include", "import", "from", "call", "filter", "autoescape", "do", "raw"},
            tag))
      return fail("unsupported tag '" + tag + "'");
    if (enclosing_ends.size() != 0)
      return fail("unexpected tag '" + tag + "', expected " + join_names(enclosing_ends));
    return fail("unknown tag '" + tag + "'");
  }

  Result<StmtPtr> parse_for() {
    auto s = std::make_unique<ForStmt>(cur().pos);
    advance();
    FERRUM_ASSIGN_OR_RETURN(s->target, parse_target(false));
    if (!at_name("in")) return unexpected("'in'");
    advance();
    FERRUM_ASSIGN_OR_RETURN(s->iterable, parse_tuple(false, {"recursive"}, false));
    if (at_name("if")) {
      advance();
      FERRUM_ASSIGN_OR_RETURN(s->filter, parse_expression());
    }
    if (at_name("recursive")) return fail("recursive loops are not supported");
    FERRUM_TRY(expect_block_end());
    ++loop_depth_;
    auto body = parse_body({"endfor", "else"}, "for", s->pos);
    --loop_depth_;
    if (!body.ok()) return body.status();
    s->body = std::move(body).value();
    if (at_name("else")) {
      advance();
      FERRUM_TRY(expect_block_end());
      FERRUM_ASSIGN_OR_RETURN(s->otherwise, parse_body({"endfor"}, "for", s->pos));
    }
    advance();
    FERRUM_TRY(expect_block_end());
    return StmtPtr(std::move(s));
  }

  Result<StmtPtr> parse_if() {
    auto s = std::make_unique<IfStmt>(cur().pos);
    advance();
    while (true) {
      FERRUM_ASSIGN_OR_RETURN(ExprPtr cond, parse_tuple(false, {}, false));
      FERRUM_TRY(expect_block_end());
      FERRUM_ASSIGN_OR_RETURN(Body body, parse_body({"elif", "else", "endif"}, "if", s->pos));
      s->branches.emplace_back(std::move(cond), std::move(body));
      const std::string tag = cur().text;
      advance();
      if (tag == "elif") continue;
      if (tag == "else") {
        FERRUM_TRY(expect_block_end());
        FERRUM_ASSIGN_OR_RETURN(s->otherwise, parse_body({"endif"}, "if", s->pos));
        advance();
      }
      FERRUM_TRY(expect_block_end());
      return StmtPtr(std::move(s));
    }
  }

  Result<StmtPtr> parse_set() {
    const SrcPos pos = cur().pos;
    advance();
    FERRUM_ASSIGN_OR_RETURN(Target target, parse_target(true));
    if (at(Tok::kAssign)) {
      advance();
      FERRUM_ASSIGN_OR_RETURN(ExprPtr value, parse_tuple(true, {}, false));
      FERRUM_TRY(expect_block_end());
      return StmtPtr(std::make_unique<SetStmt>(pos, std::move(target), std::move(value)));
    }
    if (at(Tok::kPipe)) return fail("filtered block assignments are not supported");
    FERRUM_TRY(expect_block_end());
    auto s = std::make_unique<SetBlockStmt>(pos, std::move(target));
    FERRUM_ASSIGN_OR_RETURN(s->body, parse_body({"endset"}, "set", pos));
    advance();
    FERRUM_TRY(expect_block_end());
    return StmtPtr(std::move(s));
  }

  Result<StmtPtr> parse_macro() {
    const SrcPos pos = cur().pos;
    advance();
    FERRUM_ASSIGN_OR_RETURN(std::string name, expect_name());
    auto s = std::make_unique<MacroStmt>(pos, std::move(name));
    FERRUM_TRY(expect(Tok::kLParen, "'('"));
    while (!at(Tok::kRParen)) {
      if (!s->params.empty()) FERRUM_TRY(expect(Tok::kComma, "','"));
      FERRUM_ASSIGN_OR_RETURN(std::string param, expect_name());
      ExprPtr def;
      if (at(Tok::kAssign)) {
        advance();
        FERRUM_ASSIGN_OR_RETURN(def, parse_expression());
      } else if (!s->params.empty() && s->params.back().second) {
        return fail("non-default argument follows default argument");
      }
      s->params.emplace_back(std::move(param), std::move(def));
    }
    advance();
    FERRUM_TRY(expect_block_end());
    const int saved_depth = loop_depth_;
    loop_depth_ = 0;  // a macro body is not inside the caller's loop
    auto body = parse_body({"endmacro"}, "macro", pos);
    loop_depth_ = saved_depth;
    if (!body.ok()) return body.status();
    s->body = std::move(body).value();
    advance();
    FERRUM_TRY(expect_block_end());
    return StmtPtr(std::move(s));
  }

  // {% with a = 1, b = 2 %} ... {% endwith %}, or {% generation %} ... {% endgeneration %}.
  Result<StmtPtr> parse_scope(const char* end_tag, bool with_assignments) {
    auto s = std::make_unique<ScopeStmt>(cur().pos);
    const std::string opener = cur().text;
    advance();
    while (with_assignments && !at(Tok::kBlockEnd)) {
      if (!s->assignments.empty()) FERRUM_TRY(expect(Tok::kComma, "','"));
      FERRUM_ASSIGN_OR_RETURN(std::string name, expect_name());
      FERRUM_TRY(expect(Tok::kAssign, "'='"));
      FERRUM_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
      s->assignments.emplace_back(std::move(name), std::move(value));
    }
    FERRUM_TRY(expect_block_end());
    FERRUM_ASSIGN_OR_RETURN(s->body, parse_body({end_tag}, opener, s->pos));
    advance();
    FERRUM_TRY(expect_block_end());
    return StmtPtr(std::move(s));
  }

  // `name`, `a, b`, `(a, b)`, or with `allow_attribute` `ns.attr`.
  Result<Target> parse_target(bool allow_attribute) {
    Target t;
    if (allow_attribute && at(Tok::kName) && peek().type == Tok::kDot) {
      t.names.push_back(cur().text);
      advance();
      advance();
      FERRUM_ASSIGN_OR_RETURN(t.attribute, expect_name());
      return t;
    }
    const bool paren = at(Tok::kLParen);
    if (paren) advance();
    while (true) {
      if (at_name("true") || at_name("false") || at_name("none") || at_name("True") || at_name("False") ||
          at_name("None"))
        return fail("cannot assign to constant '" + cur().text + "'");
      FERRUM_ASSIGN_OR_RETURN(std::string name, expect_name());
      t.names.push_back(std::move(name));
      if (!at(Tok::kComma)) break;
      advance();
      t.unpack = true;
      if (!at(Tok::kName)) break;  // trailing comma
    }
    if (paren) FERRUM_TRY(expect(Tok::kRParen, "')'"));
    return t;
  }

  // ---- expressions, lowest precedence first

  bool at_tuple_end(Names extra_end) const {
    return at(Tok::kVariableEnd) || at(Tok::kBlockEnd) || at(Tok::kRParen) ||
           (at(Tok::kName) && contains(extra_end, cur().text));
  }

  // A comma-separated list makes a tuple; one expression without a comma is itself.
  Result<ExprPtr> parse_tuple(bool with_condexpr, Names extra_end, bool explicit_parens) {
    auto tuple = std::make_unique<SequenceExpr>(Expr::Kind::kTuple, cur().pos);
    bool is_tuple = false;
    while (true) {
      if (!tuple->items.empty()) FERRUM_TRY(expect(Tok::kComma, "','"));
      if (at_tuple_end(extra_end)) break;
      FERRUM_ASSIGN_OR_RETURN(ExprPtr e, with_condexpr ? parse_expression() : parse_or());
      tuple->items.push_back(std::move(e));
      if (!at(Tok::kComma)) break;
      is_tuple = true;
    }
    if (!is_tuple) {
      if (!tuple->items.empty()) return std::move(tuple->items[0]);
      if (!explicit_parens) return unexpected("an expression");
    }
    return ExprPtr(std::move(tuple));
  }

  Result<ExprPtr> parse_expression() {
    FERRUM_ASSIGN_OR_RETURN(ExprPtr e, parse_or());
    while (at_name("if")) {
      const SrcPos pos = cur().pos;
      advance();
      FERRUM_ASSIGN_OR_RETURN(ExprPtr cond, parse_or());
      ExprPtr otherwise;
      if (at_name("else")) {
        advance();
        FERRUM_ASSIGN_OR_RETURN(otherwise, parse_expression());
      }
      e = std::make_unique<CondExpr>(pos, std::move(cond), std::move(e), std::move(otherwise));
    }
    return e;
  }

  Result<ExprPtr> parse_or() {
    FERRUM_ASSIGN_OR_RETURN(ExprPtr e, parse_and());
    while (at_name("or")) {
      const SrcPos pos = cur().pos;
      advance();
      FERRUM_ASSIGN_OR_RETURN(ExprPtr r, parse_and());
      e = std::make_unique<BinaryExpr>(pos, BinaryOp::kOr, std::move(e), std::move(r));
    }
    return e;
  }

  Result<ExprPtr> parse_and() {
    FERRUM_ASSIGN_OR_RETURN(ExprPtr e, parse_not());
    while (at_name("and")) {
      const SrcPos pos = cur().pos;
      advance();
      FERRUM_ASSIGN_OR_RETURN(ExprPtr r, parse_not());
      e = std::make_unique<BinaryExpr>(pos, BinaryOp::kAnd, std::move(e), std::move(r));
    }
    return e;
  }

  Result<ExprPtr> parse_not() {
    if (!at_name("not")) return parse_compare();
    const SrcPos pos = cur().pos;
    advance();
    FERRUM_ASSIGN_OR_RETURN(ExprPtr e, parse_not());
    return ExprPtr(std::make_unique<UnaryExpr>(pos, UnaryOp::kNot, std::move(e)));
  }

  Result<ExprPtr> parse_compare() {
    FERRUM_ASSIGN_OR_RETURN(ExprPtr first, parse_math1());
    std::unique_ptr<CompareExpr> cmp;
    while (true) {
      std::optional<CompareOp> op;
      switch (cur().type) {
        case Tok::kEq:
          op = CompareOp::kEq;
          break;
        case Tok::kNe:
          op = CompareOp::kNe;
          break;
        case Tok::kLt:
          op = CompareOp::kLt;
          break;
        case Tok::kLe:
          op = CompareOp::kLe;
          break;
        case Tok::kGt:
          op = CompareOp::kGt;
          break;
        case Tok::kGe:
          op = CompareOp::kGe;
          break;
        default:
          if (at_name("in")) {
            op = CompareOp::kIn;
          } else if (at_name("not") && peek().type == Tok::kName && peek().text == "in") {
            advance();
            op = CompareOp::kNotIn;
          }
      }
      if (!op) break;
      const SrcPos pos = cur().pos;
      advance();
      FERRUM_ASSIGN_OR_RETURN(ExprPtr operand, parse_math1());
      if (!cmp) cmp = std::make_unique<CompareExpr>(pos, std::move(first));
      cmp->rest.emplace_back(*op, std::move(operand));
    }
    if (!cmp) return first;
    return ExprPtr(std::move(cmp));
  }

  // Left-associative binary levels: `next` parses the operands, `op_of` maps a token to an operator.
  template <class Next, class OpOf>
  Result<ExprPtr> parse_binary(Next next, OpOf op_of) {
    FERRUM_ASSIGN_OR_RETURN(ExprPtr e, (this->*next)());
    while (auto op = op_of(cur().type)) {
      const SrcPos pos = cur().pos;
      advance();
      FERRUM_ASSIGN_OR_RETURN(ExprPtr r, (this->*next)());
      e = std::make_unique<BinaryExpr>(pos, *op, std::move(e), std::move(r));
    }
    return e;
  }

  Result<ExprPtr> parse_math1() {
    return parse_binary(&Parser::parse_concat, [](Tok t) -> std::optional<BinaryOp> {
      if (t == Tok::kAdd) return BinaryOp::kAdd;
      if (t == Tok::kSub) return BinaryOp::kSub;
      return std::nullopt;
    });
  }

  Result<ExprPtr> parse_concat() {
    return parse_binary(&Parser::parse_math2, [](Tok t) -> std::optional<BinaryOp> {
      if (t == Tok::kTilde) return BinaryOp::kConcat;
      return std::nullopt;
    });
  }

  Result<ExprPtr> parse_math2() {
    return parse_binary(&Parser::parse_pow, [](Tok t) -> std::optional<BinaryOp> {
      switch (t) {
        case Tok::kMul:
          return BinaryOp::kMul;
        case Tok::kDiv:
          return BinaryOp::kDiv;
        case Tok::kFloorDiv:
          return BinaryOp::kFloorDiv;
        case Tok::kMod:
          return BinaryOp::kMod;
        default:
          return std::nullopt;
      }
    });
  }

  Result<ExprPtr> parse_pow() {
    return parse_binary(&Parser::parse_unary_filtered, [](Tok t) -> std::optional<BinaryOp> {
      if (t == Tok::kPow) return BinaryOp::kPow;
      return std::nullopt;
    });
  }

  Result<ExprPtr> parse_unary_filtered() { return parse_unary(true); }

  // A sign applies to the operand before any filter: -x|abs is (-x)|abs.
  Result<ExprPtr> parse_unary(bool with_filter) {
    ExprPtr e;
    if (at(Tok::kSub) || at(Tok::kAdd)) {
      const SrcPos pos = cur().pos;
      const UnaryOp op = at(Tok::kSub) ? UnaryOp::kNeg : UnaryOp::kPos;
      advance();
      FERRUM_ASSIGN_OR_RETURN(ExprPtr operand, parse_unary(false));
      e = std::make_unique<UnaryExpr>(pos, op, std::move(operand));
    } else {
      FERRUM_ASSIGN_OR_RETURN(e, parse_primary());
    }
    FERRUM_ASSIGN_OR_RETURN(e, parse_postfix(std::move(e)));
    if (!with_filter) return e;
    return parse_filter_expr(std::move(e));
  }

  Result<ExprPtr> parse_primary() {
    const Token& t = cur();
    const SrcPos pos = t.pos;
    switch (t.type) {
      case Tok::kName: {
        ExprPtr e;
        if (t.text == "true" || t.text == "True") {
          e = std::make_unique<LiteralExpr>(pos, Value(true));
        } else if (t.text == "false" || t.text == "False") {
          e = std::make_unique<LiteralExpr>(pos, Value(false));
        } else if (t.text == "none" || t.text == "None") {
          e = std::make_unique<LiteralExpr>(pos, Value::none());
        } else {
          e = std::make_unique<NameExpr>(pos, t.text);
        }
        advance();
        return e;
      }
      case Tok::kString: {
        std::string s;
        while (at(Tok::kString)) {  // adjacent literals concatenate
          s += cur().text;
          advance();
        }
        return ExprPtr(std::make_unique<LiteralExpr>(pos, Value(std::move(s))));
      }
      case Tok::kInteger: {
        auto e = std::make_unique<LiteralExpr>(pos, Value(t.int_value));
        advance();
        return ExprPtr(std::move(e));
      }
      case Tok::kFloat: {
        auto e = std::make_unique<LiteralExpr>(pos, Value(t.float_value));
        advance();
        return ExprPtr(std::move(e));
      }
      case Tok::kLParen: {
        advance();
        FERRUM_ASSIGN_OR_RETURN(ExprPtr e, parse_tuple(true, {}, true));
        FERRUM_TRY(expect(Tok::kRParen, "')'"));
        return e;
      }
      case Tok::kLBracket: {
        advance();
        auto list = std::make_unique<SequenceExpr>(Expr::Kind::kList, pos);
        while (!at(Tok::kRBracket)) {
          if (!list->items.empty()) {
            FERRUM_TRY(expect(Tok::kComma, "','"));
            if (at(Tok::kRBracket)) break;
          }
          FERRUM_ASSIGN_OR_RETURN(ExprPtr e, parse_expression());
          list->items.push_back(std::move(e));
        }
        advance();
        return ExprPtr(std::move(list));
      }
      case Tok::kLBrace: {
        advance();
        auto dict = std::make_unique<DictExpr>(pos);
        while (!at(Tok::kRBrace)) {
          if (!dict->items.empty()) {
            FERRUM_TRY(expect(Tok::kComma, "','"));
            if (at(Tok::kRBrace)) break;
          }
          FERRUM_ASSIGN_OR_RETURN(ExprPtr key, parse_expression());
          FERRUM_TRY(expect(Tok::kColon, "':'"));
          FERRUM_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
          dict->items.emplace_back(std::move(key), std::move(value));
        }
        advance();
        return ExprPtr(std::move(dict));
      }
      default:
        return unexpected("an expression");
    }
  }

  Result<ExprPtr> parse_postfix(ExprPtr e) {
    while (true) {
      if (at(Tok::kDot)) {
        const SrcPos pos = cur().pos;
        advance();
        if (at(Tok::kName)) {
          e = std::make_unique<AttrExpr>(pos, std::move(e), cur().text);
        } else if (at(Tok::kInteger)) {
          e = std::make_unique<ItemExpr>(pos, std::move(e),
                                         std::make_unique<LiteralExpr>(pos, Value(cur().int_value)));
        } else {
          return unexpected("a name or number after '.'");
        }
        advance();
      } else if (at(Tok::kLBracket)) {
        FERRUM_ASSIGN_OR_RETURN(e, parse_subscript(std::move(e)));
      } else if (at(Tok::kLParen)) {
        FERRUM_ASSIGN_OR_RETURN(e, parse_call(std::move(e)));
      } else {
        return e;
      }
    }
  }

  Result<ExprPtr> parse_filter_expr(ExprPtr e) {
    while (true) {
      if (at(Tok::kPipe)) {
        FERRUM_ASSIGN_OR_RETURN(e, parse_filter(std::move(e)));
      } else if (at_name("is")) {
        FERRUM_ASSIGN_OR_RETURN(e, parse_test(std::move(e)));
      } else if (at(Tok::kLParen)) {
        FERRUM_ASSIGN_OR_RETURN(e, parse_call(std::move(e)));
      } else {
        return e;
      }
    }
  }

  // obj[i], obj[a:b:c]
  Result<ExprPtr> parse_subscript(ExprPtr object) {
    const SrcPos pos = cur().pos;
    advance();
    ExprPtr parts[3];
    int colons = 0;
    while (!at(Tok::kRBracket) && colons <= 2) {
      if (at(Tok::kColon)) {
        ++colons;
        advance();
        continue;
      }
      if (parts[colons]) return unexpected("']'");
      FERRUM_ASSIGN_OR_RETURN(parts[colons], parse_expression());
      if (at(Tok::kComma)) return fail("tuple subscripts are not supported");
    }
    FERRUM_TRY(expect(Tok::kRBracket, "']'"));
    if (colons == 0) {
      if (!parts[0]) return error_at(pos, "empty subscript");
      return ExprPtr(std::make_unique<ItemExpr>(pos, std::move(object), std::move(parts[0])));
    }
    auto s = std::make_unique<SliceExpr>(pos, std::move(object));
    s->start = std::move(parts[0]);
    s->stop = std::move(parts[1]);
    s->step = std::move(parts[2]);
    return ExprPtr(std::move(s));
  }

  Result<Arguments> parse_arguments() {
    Arguments a;
    FERRUM_TRY(expect(Tok::kLParen, "'('"));
    bool first = true;
    while (!at(Tok::kRParen)) {
      if (!first) {
        FERRUM_TRY(expect(Tok::kComma, "','"));
        if (at(Tok::kRParen)) break;
      }
      first = false;
      if (at(Tok::kMul) || at(Tok::kPow)) return fail("*args and **kwargs in calls are not supported");
      if (at(Tok::kName) && peek().type == Tok::kAssign) {
        std::string key = cur().text;
        advance();
        advance();
        FERRUM_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
        a.kwargs.emplace_back(std::move(key), std::move(value));
      } else {
        if (!a.kwargs.empty()) return fail("positional argument follows keyword argument");
        FERRUM_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
        a.args.push_back(std::move(value));
      }
    }
    advance();
    return a;
  }

  Result<ExprPtr> parse_call(ExprPtr callee) {
    auto call = std::make_unique<CallExpr>(cur().pos, std::move(callee));
    FERRUM_ASSIGN_OR_RETURN(call->arguments, parse_arguments());
    return ExprPtr(std::move(call));
  }

  Result<std::string> parse_dotted_name() {
    FERRUM_ASSIGN_OR_RETURN(std::string name, expect_name());
    while (at(Tok::kDot)) {
      advance();
      FERRUM_ASSIGN_OR_RETURN(std::string part, expect_name());
      name += "." + part;
    }
    return name;
  }

  Result<ExprPtr> parse_filter(ExprPtr value) {
    advance();
    const SrcPos pos = cur().pos;
    FERRUM_ASSIGN_OR_RETURN(std::string name, parse_dotted_name());
    if (!is_filter(name)) return error_at(pos, "unsupported filter '" + name + "'");
    auto f = std::make_unique<FilterExpr>(pos, std::move(value), std::move(name));
    if (at(Tok::kLParen)) {
      FERRUM_ASSIGN_OR_RETURN(f->arguments, parse_arguments());
    }
    return ExprPtr(std::move(f));
  }

  Result<ExprPtr> parse_test(ExprPtr value) {
    advance();
    bool negated = false;
    if (at_name("not")) {
      advance();
      negated = true;
    }
    const SrcPos pos = cur().pos;
    FERRUM_ASSIGN_OR_RETURN(std::string name, parse_dotted_name());
    if (!is_test(name)) return error_at(pos, "unsupported test '" + name + "'");
    auto t = std::make_unique<TestExpr>(pos, std::move(value), std::move(name));
    t->negated = negated;
    if (at(Tok::kLParen)) {
      FERRUM_ASSIGN_OR_RETURN(t->arguments, parse_arguments());
    } else if ((at(Tok::kName) || at(Tok::kString) || at(Tok::kInteger) || at(Tok::kFloat) ||
                at(Tok::kLBracket) || at(Tok::kLBrace)) &&
               !at_name("else") && !at_name("or") && !at_name("and")) {
      // `x is divisibleby 3`: one argument without parentheses.
      if (at_name("is")) return fail("tests cannot be chained with 'is'");
      FERRUM_ASSIGN_OR_RETURN(ExprPtr arg, parse_primary());
      FERRUM_ASSIGN_OR_RETURN(arg, parse_postfix(std::move(arg)));
      t->arguments.args.push_back(std::move(arg));
    }
    return ExprPtr(std::move(t));
  }

  std::vector<Token> toks_;
  size_t i_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Result<Body> parse(std::vector<Token> tokens) { return Parser(std::move(tokens)).parse_template(); }

}  // namespace ferrum::jinja
