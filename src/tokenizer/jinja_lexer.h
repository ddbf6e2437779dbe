// Jinja lexer with the settings of Hugging Face's chat template environment (trim_blocks,
// lstrip_blocks, no trailing newline kept), following jinja2's lexer rule by rule.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ferrum/status.h"

namespace ferrum::jinja {

enum class Tok : uint8_t {
  kData,
  kVariableBegin,
  kVariableEnd,
  kBlockBegin,
  kBlockEnd,
  kName,
  kString,
  kInteger,
  kFloat,
  kAdd,
  kSub,
  kMul,
  kDiv,
  kFloorDiv,
  kMod,
  kPow,
  kTilde,
  kLBracket,
  kRBracket,
  kLParen,
  kRParen,
  kLBrace,
  kRBrace,
  kEq,
  kNe,
  kGt,
  kGe,
  kLt,
  kLe,
  kAssign,
  kDot,
  kColon,
  kPipe,
  kComma,
  kSemicolon,
  kEof,
};

struct SrcPos {
  int line = 1;
  int column = 1;
};

struct Token {
  Tok type = Tok::kEof;
  std::string text;  // data, name, or the decoded string literal
  int64_t int_value = 0;
  double float_value = 0;
  SrcPos pos;
};

// How a token is named in error messages ("'endfor'", "end of print statement").
std::string describe(const Token& t);

// "line 3, column 7: msg"
Status error_at(SrcPos pos, const std::string& msg);

// Lexes a whole template. Newlines are normalized to "\n" and one trailing newline is dropped,
// as jinja2 does before lexing.
Result<std::vector<Token>> lex(std::string_view source);

}  // namespace ferrum::jinja
