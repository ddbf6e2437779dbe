// jinja2's filters, tests and globals in the subset chat templates use, with `tojson` and the
// globals (`raise_exception`, `strftime_now`) as Hugging Face's apply_chat_template defines them.
// Errors carry no source position; the evaluator adds it.
#pragma once

#include <string_view>

#include "ferrum/status.h"
#include "tokenizer/jinja_value.h"

namespace ferrum::jinja {

bool is_filter(std::string_view name);
bool is_test(std::string_view name);
Result<Value> apply_filter(std::string_view name, const Value& value, const CallArgs& args);
Result<bool> apply_test(std::string_view name, const Value& value, const CallArgs& args);

// range, dict, namespace, raise_exception, strftime_now.
const Object& globals();

}  // namespace ferrum::jinja
