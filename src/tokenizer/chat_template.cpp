#include "tokenizer/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

namespace ferrum {

namespace {

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// bos_token / eos_token: a string, an AddedToken object {"content": ...}, or null.
Result<std::optional<std::string>> special_token(const nlohmann::ordered_json& cfg, const char* key,
                                                 const std::string& path) {
  if (!cfg.contains(key) || cfg[key].is_null()) return std::optional<std::string>();
  const auto& v = cfg[key];
  if (v.is_string()) return std::optional<std::string>(v.get<std::string>());
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return std::optional<std::string>(v["content"].get<std::string>());
  return Error(path + ": '" + key + "' is neither a string nor an object with a string 'content'");
}

}  // namespace

Result<ChatTemplate> ChatTemplate::parse(std::string source) {
  FERRUM_ASSIGN_OR_RETURN(jinja::Template t, jinja::Template::parse(source));
  return ChatTemplate(std::move(source), std::move(t));
}

Result<std::string> ChatTemplate::render(const nlohmann::ordered_json& context) const {
  return template_.render(context);
}

Result<std::string> ChatTemplate::render_chat(const nlohmann::ordered_json& messages,
                                              const nlohmann::ordered_json& tools, bool add_generation_prompt,
                                              const nlohmann::ordered_json& extra_vars,
                                              const std::optional<std::string>& bos_token,
                                              const std::optional<std::string>& eos_token) const {
  if (!messages.is_array()) return Error("chat messages must be a JSON array");
  if (!tools.is_null() && !tools.is_array()) return Error("chat tools must be a JSON array or null");
  if (!extra_vars.is_null() && !extra_vars.is_object())
    return Error("chat template variables must be a JSON object");
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  // transformers passes the special tokens first and lets keyword arguments override them.
  if (bos_token) ctx["bos_token"] = *bos_token;
  if (eos_token) ctx["eos_token"] = *eos_token;
  if (extra_vars.is_object()) {
    for (const auto& [k, v] : extra_vars.items()) {
      if (k == "messages" || k == "tools" || k == "documents" || k == "add_generation_prompt")
        return Error("chat template variable '" + k + "' is set by the conversation itself");
      ctx[k] = v;
    }
  }
  ctx["messages"] = messages;
  ctx["tools"] = tools;
  ctx["documents"] = nullptr;
  ctx["add_generation_prompt"] = add_generation_prompt;
  return template_.render(ctx);
}

Result<ChatTemplateSource> chat_template_from_tokenizer_config(const std::string& path) {
  FERRUM_ASSIGN_OR_RETURN(std::string text, read_text(path));
  nlohmann::ordered_json cfg;
  try {
    cfg = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return Error(path + ": invalid JSON: " + e.what());
  }
  if (!cfg.is_object()) return Error(path + ": expected a JSON object");
  ChatTemplateSource src;
  if (cfg.contains("chat_template")) {
    const auto& t = cfg["chat_template"];
    if (t.is_string()) {
      src.chat_template = t.get<std::string>();
    } else if (t.is_array()) {
      for (const auto& e : t) {
        if (!e.is_object() || !e.contains("name") || !e.contains("template") || !e["name"].is_string() ||
            !e["template"].is_string())
          return Error(path + ": chat_template list entries must be {\"name\": str, \"template\": str}");
        const std::string name = e["name"].get<std::string>();
        if (name == "default") src.chat_template = e["template"].get<std::string>();
        if (name == "tool_use") src.tool_use_template = e["template"].get<std::string>();
      }
    } else if (!t.is_null()) {
      return Error(path + ": chat_template must be a string or a list of named templates");
    }
  }
  FERRUM_ASSIGN_OR_RETURN(src.bos_token, special_token(cfg, "bos_token", path));
  FERRUM_ASSIGN_OR_RETURN(src.eos_token, special_token(cfg, "eos_token", path));
  return src;
}

Result<ChatTemplateSource> chat_template_from_model(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    ChatTemplateSource src;
    if (fs::exists(dir / "tokenizer_config.json", ec)) {
      FERRUM_ASSIGN_OR_RETURN(src,
                              chat_template_from_tokenizer_config((dir / "tokenizer_config.json").string()));
    }
    // transformers lets chat_template.jinja replace the config's template.
    if (fs::exists(dir / "chat_template.jinja", ec)) {
      FERRUM_ASSIGN_OR_RETURN(src.chat_template, read_text((dir / "chat_template.jinja").string()));
    }
    if (src.chat_template.empty()) return Error(path + ": the model folder has no chat template");
    return src;
  }
  FERRUM_ASSIGN_OR_RETURN(auto gguf, GgufFile::open(path));
  ChatTemplateSource src;
  FERRUM_ASSIGN_OR_RETURN(auto tmpl, gguf->get_string("tokenizer.chat_template"));
  if (!tmpl) return Error(path + ": no tokenizer.chat_template metadata");
  src.chat_template = *tmpl;
  FERRUM_ASSIGN_OR_RETURN(src.tool_use_template, gguf->get_string("tokenizer.chat_template.tool_use"));
  const GgufValue* tokens = gguf->find("tokenizer.ggml.tokens");
  auto token_text = [&](const char* key) -> Result<std::optional<std::string>> {
    FERRUM_ASSIGN_OR_RETURN(auto id, gguf->get_int(key));
    if (!id) return std::optional<std::string>();
    if (!tokens || tokens->type != GgufType::ARRAY || *id < 0 ||
        static_cast<size_t>(*id) >= tokens->items.size())
      return Error(path + ": " + key + " " + std::to_string(*id) + " is not in tokenizer.ggml.tokens");
    return std::optional<std::string>(std::string(tokens->items[static_cast<size_t>(*id)].str));
  };
  FERRUM_ASSIGN_OR_RETURN(src.bos_token, token_text("tokenizer.ggml.bos_token_id"));
  FERRUM_ASSIGN_OR_RETURN(src.eos_token, token_text("tokenizer.ggml.eos_token_id"));
  return src;
}

Result<ChatTemplateSource> load_chat_template(const std::string& model_path, const std::string& override_path) {
  if (override_path.empty()) {
    auto src = chat_template_from_model(model_path);
    if (!src.ok()) return Error("no chat template: " + src.status().message());
    if (src->chat_template.empty()) return Error(model_path + ": the model has no chat template");
    return src;
  }
  ChatTemplateSource src;
  FERRUM_ASSIGN_OR_RETURN(src.chat_template, read_text(override_path));
  if (auto from_model = chat_template_from_model(model_path); from_model.ok()) {
    src.bos_token = from_model->bos_token;
    src.eos_token = from_model->eos_token;
  }
  return src;
}

std::vector<int32_t> encode_chat(const Tokenizer& tok, const std::string& rendered, const ChatTemplateSource& src) {
  const bool has_bos = src.bos_token && !src.bos_token->empty() && rendered.rfind(*src.bos_token, 0) == 0;
  return tok.encode(rendered, /*add_special=*/!has_bos, /*parse_special=*/true);
}

}  // namespace ferrum
