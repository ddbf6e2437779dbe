// Tree-walking evaluator with jinja2's scoping: each for-loop iteration, macro call and `with`
// block gets its own scope, so `set` inside them does not leak out (namespaces carry state out).
#pragma once

#include <string>

#include "ferrum/status.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_value.h"

namespace ferrum::jinja {

// Renders `body` with `context` as the template's variables (over the globals), appending to `out`.
Status render(const Body& body, const Object& context, std::string& out);

}  // namespace ferrum::jinja
