// Chat templates: a conversation (messages, tools) rendered into the prompt text a model expects,
// byte-identical to Hugging Face transformers' apply_chat_template(tokenize=False).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ferrum/status.h"
#include "tokenizer/jinja.h"

namespace ferrum {

class ChatTemplate {
 public:
  static Result<ChatTemplate> parse(std::string source);

  // Renders with the variables of `context` (a JSON object).
  Result<std::string> render(const nlohmann::ordered_json& context) const;

  // apply_chat_template(messages, tools=tools, add_generation_prompt=..., **extra_vars): the
  // context holds `messages`, `tools` (null or a list), `documents` (None), `add_generation_prompt`,
  // `bos_token` / `eos_token` when the tokenizer has them, then `extra_vars` (e.g. enable_thinking).
  Result<std::string> render_chat(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                  bool add_generation_prompt, const nlohmann::ordered_json& extra_vars,
                                  const std::optional<std::string>& bos_token,
                                  const std::optional<std::string>& eos_token) const;

  const std::string& source() const { return source_; }

 private:
  ChatTemplate(std::string source, jinja::Template t) : source_(std::move(source)), template_(std::move(t)) {}
  std::string source_;
  jinja::Template template_;
};

// A model's chat template and the special tokens its context passes.
struct ChatTemplateSource {
  std::string chat_template;
  std::optional<std::string> tool_use_template;  // HF's named "tool_use" template, used when tools are given
  std::optional<std::string> bos_token, eos_token;
};

// From a Hugging Face tokenizer_config.json (a string template, or a list of {name, template}).
Result<ChatTemplateSource> chat_template_from_tokenizer_config(const std::string& path);
// From a GGUF file (tokenizer.chat_template*, tokens of tokenizer.ggml.bos/eos_token_id) or a
// Hugging Face model folder (chat_template.jinja over tokenizer_config.json, as transformers loads).
Result<ChatTemplateSource> chat_template_from_model(const std::string& path);
// The model's template, or the Jinja file `override_path` (when not empty) with the model's
// BOS/EOS tokens.
Result<ChatTemplateSource> load_chat_template(const std::string& model_path, const std::string& override_path);

class Tokenizer;
// Token ids of a rendered conversation. Templates that write the BOS token themselves get no
// second one from the tokenizer; special-token text in the rendering becomes those tokens.
std::vector<int32_t> encode_chat(const Tokenizer& tok, const std::string& rendered, const ChatTemplateSource& src);

}  // namespace ferrum
