// A Jinja template interpreter for chat templates: the subset of jinja2 that Hugging Face chat
// templates use, rendered byte-for-byte as transformers' apply_chat_template renders them
// (trim_blocks, lstrip_blocks, loop controls, immutable sandbox). Constructs outside the subset
// are errors that name their line and column.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "ferrum/status.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_value.h"

namespace ferrum::jinja {

class Template {
 public:
  static Result<Template> parse(std::string_view source);
  // `context` holds the template's variables.
  Result<std::string> render(const Object& context) const;
  // `context` must be a JSON object.
  Result<std::string> render(const nlohmann::ordered_json& context) const;

 private:
  explicit Template(std::shared_ptr<const Body> body) : body_(std::move(body)) {}
  std::shared_ptr<const Body> body_;
};

}  // namespace ferrum::jinja
