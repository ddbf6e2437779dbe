// ferrum template: renders a conversation with a model's chat template, exactly as transformers'
// apply_chat_template(tokenize=False) does. --batch-file renders many conversations in one process
// (one JSON object per line), for differential tests against jinja2.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "cli_util.h"
#include "commands.h"
#include "tokenizer/chat_template.h"

namespace ferrum::cli {

namespace {

using ojson = nlohmann::ordered_json;

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<ojson> read_json(const std::string& path) {
  FERRUM_ASSIGN_OR_RETURN(std::string text, read_text(path));
  try {
    return ojson::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return Error(path + ": invalid JSON: " + e.what());
  }
}

struct Opts {
  std::string model, template_file, tokenizer_config;
  std::string messages_file, tools_file, batch_file;
  bool add_generation_prompt = false, enable_thinking = true;
  CLI::Option* enable_thinking_opt = nullptr;
  std::vector<std::string> vars;
};

// One conversation: messages, tools (null when absent), the generation prompt flag, variables.
struct Conversation {
  ojson messages, tools;
  bool add_generation_prompt = false;
  ojson vars = ojson::object();
};

class Renderer {
 public:
  static Result<Renderer> load(const Opts& o) {
    Renderer r;
    if (!o.model.empty()) {
      FERRUM_ASSIGN_OR_RETURN(r.src_, chat_template_from_model(o.model));
    } else if (!o.tokenizer_config.empty()) {
      FERRUM_ASSIGN_OR_RETURN(r.src_, chat_template_from_tokenizer_config(o.tokenizer_config));
      if (r.src_.chat_template.empty()) return Error(o.tokenizer_config + ": no chat_template");
    } else if (!o.template_file.empty()) {
      FERRUM_ASSIGN_OR_RETURN(r.src_.chat_template, read_text(o.template_file));
    } else {
      return Error("one of --model, --template or --tokenizer-config is required");
    }
    const std::string where = !o.model.empty()              ? o.model
                              : !o.tokenizer_config.empty() ? o.tokenizer_config
                                                            : o.template_file;
    auto parsed = ChatTemplate::parse(r.src_.chat_template);
    if (!parsed.ok()) return parsed.status().with_context(where + ": chat template");
    r.default_ = std::move(parsed).value();
    if (r.src_.tool_use_template) {
      auto tool_use = ChatTemplate::parse(*r.src_.tool_use_template);
      if (!tool_use.ok()) return tool_use.status().with_context(where + ": tool_use chat template");
      r.tool_use_ = std::move(tool_use).value();
    }
    return r;
  }

  // transformers picks the "tool_use" template when tools are given and the model has one.
  Result<std::string> render(const Conversation& c) const {
    const ChatTemplate& t = (!c.tools.is_null() && tool_use_) ? *tool_use_ : *default_;
    return t.render_chat(c.messages, c.tools, c.add_generation_prompt, c.vars, src_.bos_token,
                         src_.eos_token);
  }

 private:
  ChatTemplateSource src_;
  std::optional<ChatTemplate> default_, tool_use_;
};

// Variables from --enable-thinking and --var key=json.
Result<ojson> flag_vars(const Opts& o) {
  ojson vars = ojson::object();
  if (o.enable_thinking_opt->count() > 0) vars["enable_thinking"] = o.enable_thinking;
  for (const std::string& kv : o.vars) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return Error("--var expects key=json, got '" + kv + "'");
    try {
      vars[kv.substr(0, eq)] = ojson::parse(kv.substr(eq + 1));
    } catch (const nlohmann::json::exception& e) {
      return Error("--var " + kv.substr(0, eq) + ": invalid JSON: " + e.what());
    }
  }
  return vars;
}

Result<Conversation> conversation_from_flags(const Opts& o) {
  Conversation c;
  if (o.messages_file.empty()) return Error("--messages is required");
  FERRUM_ASSIGN_OR_RETURN(c.messages, read_json(o.messages_file));
  if (!o.tools_file.empty()) {
    FERRUM_ASSIGN_OR_RETURN(c.tools, read_json(o.tools_file));
  }
  c.add_generation_prompt = o.add_generation_prompt;
  FERRUM_ASSIGN_OR_RETURN(c.vars, flag_vars(o));
  return c;
}

// {"messages": [...], "tools": [...], "add_generation_prompt": bool, "vars": {...}}; the line's
// variables override the flags'.
Result<Conversation> conversation_from_json(const ojson& j, const ojson& vars, const std::string& where) {
  if (!j.is_object() || !j.contains("messages"))
    return Error(where + ": expected an object with \"messages\"");
  Conversation c;
  c.messages = j["messages"];
  if (j.contains("tools")) c.tools = j["tools"];
  if (j.contains("add_generation_prompt")) {
    if (!j["add_generation_prompt"].is_boolean())
      return Error(where + ": add_generation_prompt must be a boolean");
    c.add_generation_prompt = j["add_generation_prompt"].get<bool>();
  }
  c.vars = vars;
  if (j.contains("vars")) {
    if (!j["vars"].is_object()) return Error(where + ": vars must be an object");
    for (const auto& [k, v] : j["vars"].items()) c.vars[k] = v;
  }
  return c;
}

// Prints one JSON value per input line: the rendered string, or {"error": message}.
Status render_batch(const Renderer& r, const std::string& path, const ojson& vars) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(path + ": cannot open");
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    const std::string where = path + ":" + std::to_string(n);
    ojson j;
    try {
      j = ojson::parse(line);
    } catch (const nlohmann::json::exception& e) {
      return Error(where + ": invalid JSON: " + e.what());
    }
    FERRUM_ASSIGN_OR_RETURN(Conversation c, conversation_from_json(j, vars, where));
    auto out = r.render(c);
    const ojson result = out.ok() ? ojson(out.value()) : ojson{{"error", out.status().message()}};
    std::printf("%s\n", result.dump().c_str());
  }
  return {};
}

}  // namespace

void add_template(CLI::App& app, int& exit_code) {
  auto* cmd =
      app.add_subcommand("template", "Render a conversation with a chat template (prints it exactly)");
  auto o = std::make_shared<Opts>();
  auto* model = cmd->add_option("--model", o->model, "GGUF file or Hugging Face model folder");
  auto* tmpl = cmd->add_option("--template", o->template_file, "Jinja template file");
  auto* cfg =
      cmd->add_option("--tokenizer-config", o->tokenizer_config, "Hugging Face tokenizer_config.json");
  model->excludes(tmpl, cfg);
  tmpl->excludes(cfg);
  auto* messages = cmd->add_option("--messages", o->messages_file, "JSON file with the list of messages");
  cmd->add_option("--tools", o->tools_file, "JSON file with the list of tool schemas");
  cmd->add_flag("--add-generation-prompt", o->add_generation_prompt, "End with the assistant turn's header");
  o->enable_thinking_opt =
      cmd->add_flag("--enable-thinking", o->enable_thinking, "Set enable_thinking (--enable-thinking=false)");
  cmd->add_option("--var", o->vars, "Extra template variable, key=json (repeatable)");
  auto* batch =
      cmd->add_option("--batch-file", o->batch_file,
                      "JSON-lines file of {messages, tools, add_generation_prompt, vars} (vars over "
                      "the flags'); prints one JSON string (or {\"error\": ...}) per line");
  batch->excludes(messages);
  messages->excludes(batch);
  cmd->callback([o, &exit_code] {
    auto r = Renderer::load(*o);
    if (!r.ok()) return void(exit_code = fail(r.status()));
    if (!o->batch_file.empty()) {
      auto vars = flag_vars(*o);
      if (!vars.ok()) return void(exit_code = fail(vars.status()));
      const Status st = render_batch(r.value(), o->batch_file, vars.value());
      if (!st.ok()) exit_code = fail(st);
      return;
    }
    auto conv = conversation_from_flags(*o);
    if (!conv.ok()) return void(exit_code = fail(conv.status()));
    auto out = r.value().render(conv.value());
    if (!out.ok()) return void(exit_code = fail(out.status()));
    std::fwrite(out.value().data(), 1, out.value().size(), stdout);
  });
}

}  // namespace ferrum::cli
