// Recursive-descent parser for the Jinja subset chat templates use, with jinja2's grammar and
// operator precedence. Tags outside the subset are errors naming their line and column.
#pragma once

#include <vector>

#include "ferrum/status.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_lexer.h"

namespace ferrum::jinja {

Result<Body> parse(std::vector<Token> tokens);

}  // namespace ferrum::jinja
