// ferrum run: one-shot generation (--prompt) or an interactive chat on a terminal.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "cli_util.h"
#include "commands.h"
#include "engine/generate.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace ferrum::cli {

namespace {

std::atomic<bool> g_interrupt{false};
void on_sigint(int) { g_interrupt.store(true); }

// Shows <think>...</think> spans dimmed (on a terminal) or hides them. Tags may arrive split
// across chunks, so a suffix that could start a tag is held back until the next chunk.
class ThinkFilter {
 public:
  ThinkFilter(bool hide, bool color) : hide_(hide), color_(color) {}
  std::string feed(std::string_view text) {
    buf_ += text;
    std::string out;
    while (true) {
      const std::string tag = in_think_ ? "</think>" : "<think>";
      const size_t at = buf_.find(tag);
      if (at == std::string::npos) break;
      emit(out, buf_.substr(0, at));
      if (!hide_) emit(out, tag);
      buf_.erase(0, at + tag.size());
      in_think_ = !in_think_;
      if (color_ && !hide_) out += in_think_ ? "\033[2m" : "\033[0m";
    }
    const std::string tag = in_think_ ? "</think>" : "<think>";
    size_t keep = 0;
    for (size_t n = std::min(tag.size() - 1, buf_.size()); n > 0; --n)
      if (buf_.compare(buf_.size() - n, n, tag, 0, n) == 0) {
        keep = n;
        break;
      }
    emit(out, buf_.substr(0, buf_.size() - keep));
    buf_.erase(0, buf_.size() - keep);
    return out;
  }
  std::string finish() {
    std::string out;
    emit(out, buf_);
    buf_.clear();
    if (in_think_ && color_ && !hide_) out += "\033[0m";
    in_think_ = false;
    return out;
  }

 private:
  void emit(std::string& out, const std::string& s) {
    if (!(hide_ && in_think_)) out += s;
  }
  bool hide_, color_, in_think_ = false;
  std::string buf_;
};

}  // namespace

void add_run(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("run", "Generate text: --prompt for one answer, or chat interactively on a terminal");
  struct Opts {
    std::string model, prompt, system, chat_template;
    bool raw = false, hide_thinking = false, verbose = false;
    float temp = 0.8f, top_p = 0.95f, min_p = 0.05f, repeat_penalty = 1.0f, presence = 0, frequency = 0;
    int32_t top_k = 40, repeat_last_n = 64, max_tokens = -1;
    int64_t seed = -1;
    std::vector<std::string> stop;
    RuntimeFlags rt;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder (default: $FERRUM_MODEL, else "
                                          "Gemma 3 270M from scripts/fetch_models in $FERRUM_CACHE/models, "
                                          "~/.cache/ferrum/models)");
  cmd->add_option("-p,--prompt", o->prompt, "Answer this prompt and exit");
  cmd->add_flag("--raw", o->raw, "Feed the prompt as it is, without the chat template");
  cmd->add_option("--system", o->system, "System message");
  cmd->add_option("--chat-template", o->chat_template, "Jinja chat template file (overrides the model's)");
  cmd->add_flag("--hide-thinking", o->hide_thinking, "Hide <think>...</think> content");
  cmd->add_flag("-v,--verbose", o->verbose, "Print prompt/decode statistics after each answer");
  cmd->add_option("--temp", o->temp, "Temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-k", o->top_k, "Top-k (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", o->top_p, "Top-p (1 = off)")->capture_default_str();
  cmd->add_option("--min-p", o->min_p, "Min-p (0 = off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", o->repeat_penalty, "Repetition penalty (1 = off)")->capture_default_str();
  cmd->add_option("--repeat-last-n", o->repeat_last_n, "Tokens the repetition penalty looks back")->capture_default_str();
  cmd->add_option("--presence-penalty", o->presence, "Presence penalty")->capture_default_str();
  cmd->add_option("--frequency-penalty", o->frequency, "Frequency penalty")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Random seed (default: random)");
  cmd->add_option("-n,--max-tokens", o->max_tokens, "Tokens to generate (-1: until end of text or context)");
  cmd->add_option("--stop", o->stop, "Stop string (repeatable)");
  o->rt.add_to(cmd);
  cmd->callback([o, &exit_code] {
    std::string model = o->model;
    if (model.empty()) {
      auto def = default_model();
      if (!def.ok()) return void(exit_code = fail(def.status()));
      model = def.value();
    }
    if (!std::filesystem::exists(model))
      return void(exit_code = fail(Error(model + ": model not found (pass --model FILE.gguf or a Hugging Face folder, "
                                                 "or set FERRUM_MODEL)")));
    auto rt = load_runtime(model, o->rt);
    if (!rt.ok()) return void(exit_code = fail(rt.status()));
    auto tok = Tokenizer::load(model);
    if (!tok.ok()) return void(exit_code = fail(tok.status()));
    Runtime& r = *rt.value();
    const Tokenizer& t = *tok.value();

    GenerateOptions gen;
    gen.sampling.temperature = o->temp;
    gen.sampling.top_k = o->top_k;
    gen.sampling.top_p = o->top_p;
    gen.sampling.min_p = o->min_p;
    gen.sampling.repeat_penalty = o->repeat_penalty;
    gen.sampling.repeat_last_n = o->repeat_last_n;
    gen.sampling.presence_penalty = o->presence;
    gen.sampling.frequency_penalty = o->frequency;
    gen.sampling.seed = o->seed >= 0 ? static_cast<uint64_t>(o->seed) : std::random_device{}();
    gen.max_tokens = o->max_tokens < 0 ? 0 : o->max_tokens;
    gen.stop = o->stop;

    // The chat template, unless the prompt goes in raw.
    std::optional<ChatTemplate> tmpl;
    ChatTemplateSource src;
    if (!o->raw) {
      auto loaded = load_chat_template(model, o->chat_template);
      if (!loaded.ok())
        return void(exit_code = fail(Error(loaded.status().message() + " (use --raw, or --chat-template FILE)")));
      src = std::move(loaded).value();
      auto parsed = ChatTemplate::parse(src.chat_template);
      if (!parsed.ok()) return void(exit_code = fail(parsed.status()));
      tmpl = std::move(parsed).value();
    }

    const bool tty_out = isatty(fileno(stdout));
    Conversation conv(r, t, 0);
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!o->system.empty()) messages.push_back({{"role", "system"}, {"content", o->system}});

    // Renders the conversation (or takes the raw prompt) and generates one answer.
    auto answer = [&](const std::string& user) -> Status {
      std::vector<int32_t> ids;
      if (tmpl) {
        messages.push_back({{"role", "user"}, {"content", user}});
        FERRUM_ASSIGN_OR_RETURN(std::string text,
                                tmpl->render_chat(messages, nlohmann::ordered_json(), true,
                                                  nlohmann::ordered_json::object(), src.bos_token, src.eos_token));
        ids = encode_chat(t, text, src);
      } else {
        ids = t.encode(user, /*add_special=*/true, /*parse_special=*/false);
      }
      ThinkFilter think(o->hide_thinking, tty_out);
      g_interrupt.store(false);
      FERRUM_ASSIGN_OR_RETURN(GenerateResult res, conv.generate(ids, gen, [&](std::string_view s) {
                                std::fputs(think.feed(s).c_str(), stdout);
                                std::fflush(stdout);
                              }, &g_interrupt));
      std::fputs(think.finish().c_str(), stdout);
      if (tmpl) messages.push_back({{"role", "assistant"}, {"content", res.text}});
      if (o->verbose) {
        const int64_t prefilled = res.prompt_tokens - res.reused_tokens;
        std::fprintf(stderr,
                     "\n[prompt %lld tokens (%lld cached, %lld prefilled) %.1f tok/s | generated %zu tokens %.1f tok/s | %s]\n",
                     (long long)res.prompt_tokens, (long long)res.reused_tokens, (long long)prefilled,
                     res.prefill_seconds > 0 ? double(prefilled) / res.prefill_seconds : 0.0, res.tokens.size(),
                     res.decode_seconds > 0 ? double(res.tokens.size()) / res.decode_seconds : 0.0,
                     res.cancelled ? "interrupted" : std::string(finish_reason_name(res.reason)).c_str());
      }
      return {};
    };

    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: Ctrl-C also interrupts a pending read of the next line
    sigaction(SIGINT, &sa, nullptr);

    if (!o->prompt.empty() || !isatty(fileno(stdin))) {
      std::string prompt = o->prompt;
      if (prompt.empty()) {
        std::stringstream ss;
        ss << std::cin.rdbuf();
        prompt = ss.str();
      }
      if (auto st = answer(prompt); !st.ok()) return void(exit_code = fail(st));
      if (tty_out) std::fputc('\n', stdout);
      return;
    }
    if (!tmpl) return void(exit_code = fail(Error("interactive chat needs a chat template (drop --raw)")));
    std::fprintf(stderr, "ferrum chat: %s. Commands: /clear, /system TEXT, /exit. Ctrl-C stops an answer.\n",
                 model.c_str());
    std::string line;
    while (true) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
      g_interrupt.store(false);
      if (!std::getline(std::cin, line)) {
        if (g_interrupt.load() && !std::cin.eof()) {  // Ctrl-C at the prompt
          std::cin.clear();
          std::fputs("\n(/exit or Ctrl-D to quit)\n", stdout);
          continue;
        }
        std::fputc('\n', stdout);
        break;
      }
      if (line == "/exit" || line == "/quit") break;
      if (line == "/clear") {
        messages = nlohmann::ordered_json::array();
        if (!o->system.empty()) messages.push_back({{"role", "system"}, {"content", o->system}});
        conv.clear();
        std::fputs("(conversation cleared)\n", stdout);
        continue;
      }
      if (line.rfind("/system ", 0) == 0) {
        o->system = line.substr(8);
        messages = nlohmann::ordered_json::array({{{"role", "system"}, {"content", o->system}}});
        std::fputs("(system message set; conversation cleared)\n", stdout);
        continue;
      }
      if (line.empty()) continue;
      if (auto st = answer(line); !st.ok()) {
        messages.erase(messages.size() - 1);  // the user turn that failed
        std::fprintf(stderr, "error: %s\n", st.message().c_str());
      }
      std::fputc('\n', stdout);
    }
  });
}

}  // namespace ferrum::cli
