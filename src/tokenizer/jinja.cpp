#include "tokenizer/jinja.h"

#include "tokenizer/jinja_eval.h"
#include "tokenizer/jinja_lexer.h"
#include "tokenizer/jinja_parser.h"

namespace ferrum::jinja {

Result<Template> Template::parse(std::string_view source) {
  FERRUM_ASSIGN_OR_RETURN(std::vector<Token> tokens, lex(source));
  FERRUM_ASSIGN_OR_RETURN(Body body, jinja::parse(std::move(tokens)));
  return Template(std::make_shared<const Body>(std::move(body)));
}

Result<std::string> Template::render(const Object& context) const {
  std::string out;
  FERRUM_TRY(jinja::render(*body_, context, out));
  return out;
}

Result<std::string> Template::render(const nlohmann::ordered_json& context) const {
  if (!context.is_object()) return Error("template context must be a JSON object");
  const Value v = from_json(context);
  return render(v.as_dict());
}

}  // namespace ferrum::jinja
