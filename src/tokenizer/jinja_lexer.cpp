#include "tokenizer/jinja_lexer.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "tokenizer/jinja_text.h"
#include "tokenizer/unicode_util.h"

namespace ferrum::jinja {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

struct Operator {
  std::string_view text;
  Tok type;
};
// Longest first, so "//" wins over "/".
constexpr Operator kOperators[] = {
    {"//", Tok::kFloorDiv}, {"**", Tok::kPow},      {"==", Tok::kEq},    {"!=", Tok::kNe},
    {">=", Tok::kGe},       {"<=", Tok::kLe},       {"+", Tok::kAdd},    {"-", Tok::kSub},
    {"/", Tok::kDiv},       {"*", Tok::kMul},       {"%", Tok::kMod},    {"~", Tok::kTilde},
    {"[", Tok::kLBracket},  {"]", Tok::kRBracket},  {"(", Tok::kLParen}, {")", Tok::kRParen},
    {"{", Tok::kLBrace},    {"}", Tok::kRBrace},    {">", Tok::kGt},     {"<", Tok::kLt},
    {"=", Tok::kAssign},    {".", Tok::kDot},       {":", Tok::kColon},  {"|", Tok::kPipe},
    {",", Tok::kComma},     {";", Tok::kSemicolon},
};

// jinja2 normalizes every newline sequence to "\n" and drops one trailing newline.
std::string normalize(std::string_view src) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out.push_back(src[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string src) : src_(std::move(src)) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  Result<std::vector<Token>> run() {
    if (!text::is_valid_utf8(src_)) return Error("template is not valid UTF-8");
    size_t p = 0;
    while (p < src_.size()) {
      const size_t idx = find_tag_start(p);
      if (idx == std::string::npos) {
        emit_data(src_.substr(p), p);
        break;
      }
      const char kind = src_[idx + 1];
      const char sign =
          idx + 2 < src_.size() && (src_[idx + 2] == '-' || src_[idx + 2] == '+') ? src_[idx + 2] : 0;
      const size_t raw_end = kind == '%' ? match_raw_begin(idx + 2 + (sign ? 1 : 0)) : std::string::npos;
      emit_data(strip_before_tag(src_.substr(p, idx - p), sign, kind == '{'), p);
      const size_t body = idx + 2 + (sign ? 1 : 0);
      if (raw_end != std::string::npos) {
        line_starting_ = src_[raw_end - 1] == '\n';
        FERRUM_ASSIGN_OR_RETURN(p, lex_raw(raw_end, idx));
      } else if (kind == '#') {
        FERRUM_ASSIGN_OR_RETURN(p, skip_comment(body, idx));
      } else {
        push(kind == '{' ? Tok::kVariableBegin : Tok::kBlockBegin, idx);
        FERRUM_ASSIGN_OR_RETURN(p, lex_tag(kind == '{' ? Tok::kVariableEnd : Tok::kBlockEnd, body, idx));
      }
    }
    push(Tok::kEof, src_.size());
    return std::move(out_);
  }

 private:
  SrcPos pos_of(size_t offset) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - 1;
    const size_t col_bytes = offset - *it;
    return {static_cast<int>(it - line_starts_.begin()) + 1,
            static_cast<int>(text::length(std::string_view(src_).substr(*it, col_bytes))) + 1};
  }

  Token& push(Tok type, size_t offset, std::string text = {}) {
    Token t;
    t.type = type;
    t.text = std::move(text);
    t.pos = pos_of(offset);
    out_.push_back(std::move(t));
    return out_.back();
  }

  void emit_data(std::string text, size_t offset) {
    if (!text.empty()) push(Tok::kData, offset, std::move(text));
  }

  bool at(size_t p, std::string_view s) const { return src_.compare(p, s.size(), s) == 0; }

  size_t find_tag_start(size_t p) const {
    for (size_t i = src_.find('{', p); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  // Python's `\s*`: skips Unicode whitespace.
  size_t skip_space(size_t p) const {
    while (p < src_.size()) {
      const size_t len = char_len(p);
      if (!text::is_space(text::decode(std::string_view(src_).substr(p, len))[0])) break;
      p += len;
    }
    return p;
  }

  size_t char_len(size_t p) const {
    const auto b = static_cast<unsigned char>(src_[p]);
    return b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
  }

  // `-` strips all whitespace before a tag; lstrip_blocks strips spaces and tabs between a line start
  // and a block or comment tag, unless the tag starts with `+`.
  std::string strip_before_tag(std::string text, char sign, bool is_variable) const {
    if (sign == '-') return text::strip(text, std::nullopt, false, true);
    if (sign == '+' || is_variable) return text;
    const size_t rfind = text.rfind('\n');
    const size_t l_pos = rfind == std::string::npos ? 0 : rfind + 1;
    if ((l_pos > 0 || line_starting_) && text.find_first_not_of(" \t", l_pos) == std::string::npos)
      text.resize(l_pos);
    return text;
  }

  // Matches `\s*raw\s*(-%}\s*|%})` at p; returns the end, or npos.
  size_t match_raw_begin(size_t p) const {
    p = skip_space(p);
    if (!at(p, "raw")) return std::string::npos;
    p = skip_space(p + 3);
    if (at(p, "-%}")) return skip_space(p + 3);
    if (at(p, "%}")) return p + 2;
    return std::string::npos;
  }

  // Block end `-%}\s*`, `+%}`, `%}\n?` (trim_blocks); variable end `-}}\s*`, `}}`. Returns the
  // end of the match, or npos.
  size_t match_end(size_t p, Tok end) const {
    const char* close = end == Tok::kBlockEnd ? "%}" : "}}";
    if (at(p, std::string("-") + close)) return skip_space(p + 3);
    if (end == Tok::kBlockEnd && at(p, "+%}")) return p + 3;
    if (at(p, close)) return p + 2 + (end == Tok::kBlockEnd && p + 2 < src_.size() && src_[p + 2] == '\n');
    return std::string::npos;
  }

  Result<size_t> skip_comment(size_t p, size_t begin) {
    for (; p < src_.size(); ++p) {
      size_t end = std::string::npos;
      if (at(p, "+#}")) {
        end = p + 3;
      } else if (at(p, "-#}")) {
        end = skip_space(p + 3);
      } else if (at(p, "#}")) {
        end = p + 2 + (p + 2 < src_.size() && src_[p + 2] == '\n');
      }
      if (end != std::string::npos) {
        line_starting_ = src_[end - 1] == '\n';
        return end;
      }
    }
    return error_at(pos_of(begin), "missing end of comment tag");
  }

  // Raw text up to `{% endraw %}`, whose whitespace control applies to the raw text as to data.
  Result<size_t> lex_raw(size_t p, size_t begin) {
    for (size_t i = src_.find("{%", p); i != std::string::npos; i = src_.find("{%", i + 1)) {
      size_t q = i + 2;
      const char sign = q < src_.size() && (src_[q] == '-' || src_[q] == '+') ? src_[q] : 0;
      q = skip_space(q + (sign ? 1 : 0));
      if (!at(q, "endraw")) continue;
      const size_t end = match_end(skip_space(q + 6), Tok::kBlockEnd);
      if (end == std::string::npos) continue;
      emit_data(strip_before_tag(src_.substr(p, i - p), sign, false), p);
      line_starting_ = src_[end - 1] == '\n';
      return end;
    }
    return error_at(pos_of(begin), "missing end of raw directive");
  }

  Result<size_t> lex_tag(Tok end_type, size_t p, size_t begin) {
    std::vector<char> balance;  // closing brackets expected, innermost last
    while (p < src_.size()) {
      if (balance.empty()) {
        const size_t end = match_end(p, end_type);
        if (end != std::string::npos) {
          push(end_type, p);
          line_starting_ = src_[end - 1] == '\n';
          return end;
        }
      }
      const size_t len = char_len(p);
      if (text::is_space(text::decode(std::string_view(src_).substr(p, len))[0])) {
        p += len;
        continue;
      }
      FERRUM_ASSIGN_OR_RETURN(p, lex_token(p, balance));
    }
    return error_at(pos_of(begin), std::string("unexpected end of template: '") + src_.substr(begin, 2) +
                                       "' is never closed");
  }

  // One token of an expression, in jinja2's rule order; returns its end.
  Result<size_t> lex_token(size_t p, std::vector<char>& balance) {
    const char c = src_[p];
    if (p == 0 || src_[p - 1] != '.') {
      FERRUM_ASSIGN_OR_RETURN(const size_t end, lex_float(p));
      if (end != std::string::npos) return end;
    }
    if (is_digit(c)) return lex_integer(p);
    if (is_name_start(c)) {
      size_t end = p;
      while (end < src_.size() && is_name_char(src_[end])) ++end;
      push(Tok::kName, p, src_.substr(p, end - p));
      return end;
    }
    if (c == '\'' || c == '"') return lex_string(p);
    return lex_operator(p, balance);
  }

  // `(\d+_)*\d+`: returns the end, or npos.
  size_t match_digits(size_t p) const {
    if (p >= src_.size() || !is_digit(src_[p])) return std::string::npos;
    while (p < src_.size() && is_digit(src_[p])) ++p;
    while (p + 1 < src_.size() && src_[p] == '_' && is_digit(src_[p + 1])) {
      ++p;
      while (p < src_.size() && is_digit(src_[p])) ++p;
    }
    return p;
  }

  // `e[+-]?digits` at p: returns the end, or npos.
  size_t match_exponent(size_t p) const {
    if (p >= src_.size() || (src_[p] != 'e' && src_[p] != 'E')) return std::string::npos;
    ++p;
    if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
    return match_digits(p);
  }

  std::string without_underscores(size_t p, size_t end) const {
    std::string s = src_.substr(p, end - p);
    s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
    return s;
  }

  // jinja2's float rule: digits with a fraction, an exponent, or both. Returns npos when absent.
  Result<size_t> lex_float(size_t p) {
    const size_t int_end = match_digits(p);
    if (int_end == std::string::npos) return std::string::npos;
    size_t end = std::string::npos;
    const size_t frac_end = at(int_end, ".") ? match_digits(int_end + 1) : std::string::npos;
    if (frac_end != std::string::npos) {
      const size_t exp_end = match_exponent(frac_end);
      end = exp_end != std::string::npos ? exp_end : frac_end;
    } else {
      end = match_exponent(int_end);
    }
    if (end == std::string::npos) return std::string::npos;
    push(Tok::kFloat, p, src_.substr(p, end - p)).float_value =
        std::strtod(without_underscores(p, end).c_str(), nullptr);
    return end;
  }

  Result<size_t> lex_integer(size_t p) {
    int base = 10;
    size_t digits_begin = p, end = p + 1;
    if (src_[p] == '0' && p + 1 < src_.size()) {
      const char b = static_cast<char>(src_[p + 1] | 0x20);
      base = b == 'b' ? 2 : b == 'o' ? 8 : b == 'x' ? 16 : 10;
    }
    auto in_base = [&](char ch) {
      if (base == 16) return std::isxdigit(static_cast<unsigned char>(ch)) != 0;
      return ch >= '0' && ch < '0' + base;
    };
    if (base != 10) {
      size_t q = p + 2;
      while (true) {
        const size_t d = q < src_.size() && src_[q] == '_' ? q + 1 : q;
        if (d >= src_.size() || !in_base(src_[d])) break;
        q = d + 1;
      }
      if (q > p + 2) {
        digits_begin = p + 2;
        end = q;
      } else {
        base = 10;
      }
    }
    if (base == 10) {
      // `[1-9](_?\d)*` or `0(_?0)*`
      const char allowed_max = src_[p] == '0' ? '0' : '9';
      while (true) {
        const size_t d = end < src_.size() && src_[end] == '_' ? end + 1 : end;
        if (d >= src_.size() || src_[d] < '0' || src_[d] > allowed_max) break;
        end = d + 1;
      }
    }
    const std::string digits = without_underscores(digits_begin, end);
    errno = 0;
    const unsigned long long v = std::strtoull(digits.c_str(), nullptr, base);
    if (errno == ERANGE || v > static_cast<unsigned long long>(INT64_MAX))
      return error_at(pos_of(p), "integer literal out of range: " + src_.substr(p, end - p));
    push(Tok::kInteger, p, src_.substr(p, end - p)).int_value = static_cast<int64_t>(v);
    return end;
  }

  Result<size_t> lex_string(size_t p) {
    const char quote = src_[p];
    size_t q = p + 1;
    while (q < src_.size() && src_[q] != quote) q += src_[q] == '\\' ? 2 : 1;
    if (q >= src_.size()) return error_at(pos_of(p), "unterminated string literal");
    FERRUM_ASSIGN_OR_RETURN(std::string value, unescape(p + 1, q));
    push(Tok::kString, p, std::move(value));
    return q + 1;
  }

  // Python's "unicode-escape" decoding, which jinja2 applies to string literals.
  Result<std::string> unescape(size_t begin, size_t end) const {
    std::string out;
    for (size_t i = begin; i < end; ++i) {
      if (src_[i] != '\\') {
        out.push_back(src_[i]);
        continue;
      }
      const size_t esc = i++;
      const char e = src_[i];
      auto hex = [&](int n) -> Result<char32_t> {
        if (i + n >= end) return error_at(pos_of(esc), "truncated \\" + std::string(1, e) + " escape");
        char32_t v = 0;
        for (int k = 1; k <= n; ++k) {
          const char h = src_[i + k];
          if (!std::isxdigit(static_cast<unsigned char>(h)))
            return error_at(pos_of(esc), "truncated \\" + std::string(1, e) + " escape");
          v = v * 16 + static_cast<char32_t>(is_digit(h) ? h - '0' : (h | 0x20) - 'a' + 10);
        }
        i += n;
        return v;
      };
      char32_t cp = 0;
      switch (e) {
        case '\n':
          continue;
        case '\\':
        case '\'':
        case '"':
          out.push_back(e);
          continue;
        case 'a':
          out.push_back('\a');
          continue;
        case 'b':
          out.push_back('\b');
          continue;
        case 'f':
          out.push_back('\f');
          continue;
        case 'n':
          out.push_back('\n');
          continue;
        case 'r':
          out.push_back('\r');
          continue;
        case 't':
          out.push_back('\t');
          continue;
        case 'v':
          out.push_back('\v');
          continue;
        case 'x': {
          FERRUM_ASSIGN_OR_RETURN(cp, hex(2));
          break;
        }
        case 'u': {
          FERRUM_ASSIGN_OR_RETURN(cp, hex(4));
          break;
        }
        case 'U': {
          FERRUM_ASSIGN_OR_RETURN(cp, hex(8));
          break;
        }
        case 'N':
          return error_at(pos_of(esc), "\\N{...} escapes are not supported");
        default:
          if (e >= '0' && e <= '7') {
            cp = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && i + 1 < end && src_[i + 1] >= '0' && src_[i + 1] <= '7'; ++k)
              cp = cp * 8 + static_cast<char32_t>(src_[++i] - '0');
            break;
          }
          out.push_back('\\');  // unknown escapes stay as written
          out.push_back(e);
          continue;
      }
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return error_at(pos_of(esc), "escape is not a valid Unicode scalar value");
      tok::append_utf8(out, cp);
    }
    return out;
  }

  Result<size_t> lex_operator(size_t p, std::vector<char>& balance) {
    for (const auto& op : kOperators) {
      if (!at(p, op.text)) continue;
      const char c = op.text[0];
      if (op.text.size() == 1 && (c == '(' || c == '[' || c == '{')) {
        balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
      } else if (op.text.size() == 1 && (c == ')' || c == ']' || c == '}')) {
        if (balance.empty()) return error_at(pos_of(p), std::string("unexpected '") + c + "'");
        if (balance.back() != c)
          return error_at(pos_of(p),
                          std::string("unexpected '") + c + "', expected '" + balance.back() + "'");
        balance.pop_back();
      }
      push(op.type, p, std::string(op.text));
      return p + op.text.size();
    }
    return error_at(pos_of(p), "unexpected character '" + src_.substr(p, char_len(p)) + "'");
  }

  std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> out_;
  bool line_starting_ = true;
};

}  // namespace

std::string describe(const Token& t) {
  switch (t.type) {
    case Tok::kData:
      return "template data";
    case Tok::kVariableBegin:
      return "begin of print statement";
    case Tok::kVariableEnd:
      return "end of print statement";
    case Tok::kBlockBegin:
      return "begin of statement block";
    case Tok::kBlockEnd:
      return "end of statement block";
    case Tok::kEof:
      return "end of template";
    case Tok::kString:
      return "string literal";
    default:
      return "'" + t.text + "'";
  }
}

Status error_at(SrcPos pos, const std::string& msg) {
  return Error("line " + std::to_string(pos.line) + ", column " + std::to_string(pos.column) + ": " + msg);
}

Result<std::vector<Token>> lex(std::string_view source) { return Lexer(normalize(source)).run(); }

}  // namespace ferrum::jinja
