// ferrum generate: greedy continuation of a token list, printed as ids.
#include <cstdio>

#include "cli_util.h"
#include "commands.h"
#include "core/profiler.h"

namespace ferrum::cli {

void add_generate(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("generate", "Greedy continuation of --tokens (prints token ids)");
  struct Opts {
    std::string model, tokens;
    int64_t n = 16;
    RuntimeFlags rt;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("--tokens", o->tokens, "Comma-separated prompt token ids")->required();
  cmd->add_option("-n,--n-predict", o->n, "Tokens to generate")->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  o->rt.add_to(cmd);
  cmd->callback([o, &exit_code] {
    auto ids = parse_ids(o->tokens);
    if (!ids.ok()) return void(exit_code = fail(ids.status()));
    auto rt = load_runtime(o->model, o->rt);
    if (!rt.ok()) return void(exit_code = fail(rt.status()));
    Runtime& r = *rt.value();
    const int64_t V = r.config().vocab_size;
    auto lv = r.prefill(0, *ids);
    if (!lv.ok()) return void(exit_code = fail(lv.status()));
    if (r.runtime_config().profile) {
      std::fputs(r.profiler().report("prefill").c_str(), stderr);
      r.profiler().reset();
    }
    std::vector<int32_t> out;
    int64_t pos = static_cast<int64_t>(ids->size());
    for (int64_t i = 0; i < o->n; ++i) {
      const int32_t next = argmax(lv->row(lv->rows - 1), V);
      out.push_back(next);
      if (i + 1 == o->n) break;
      lv = r.decode(0, next, pos++);
      if (!lv.ok()) return void(exit_code = fail(lv.status()));
    }
    std::printf("%s\n", join_ids(out).c_str());
    if (r.runtime_config().profile) std::fputs(r.profiler().report("decode").c_str(), stderr);
  });
}

}  // namespace ferrum::cli
