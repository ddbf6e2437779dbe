// ferrum logits: logits after each prefix of a token list, as a .npy [n_tokens, vocab].
#include <algorithm>
#include <cstdio>
#include <numeric>

#include "cli_util.h"
#include "commands.h"
#include "core/npy.h"
#include "core/profiler.h"

namespace ferrum::cli {

void add_logits(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("logits", "Write the logits after each prefix of --tokens to a .npy file");
  struct Opts {
    std::string model, tokens, out, mode = "prefill";
    RuntimeFlags rt;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("--tokens", o->tokens, "Comma-separated token ids")->required();
  cmd->add_option("-o,--out", o->out, "Output .npy (float32 [n_tokens, vocab])")->required();
  cmd->add_option("--mode", o->mode, "prefill: one batch; decode: one token at a time")
      ->check(CLI::IsMember({"prefill", "decode"}));
  o->rt.add_to(cmd);
  cmd->callback([o, &exit_code] {
    auto ids = parse_ids(o->tokens);
    if (!ids.ok()) return void(exit_code = fail(ids.status()));
    auto rt = load_runtime(o->model, o->rt);
    if (!rt.ok()) return void(exit_code = fail(rt.status()));
    Runtime& r = *rt.value();
    const int64_t V = r.config().vocab_size, n = static_cast<int64_t>(ids->size());
    std::vector<float> all(static_cast<size_t>(n * V));
    if (o->mode == "prefill") {
      auto lv = r.prefill(0, *ids, /*all_logits=*/true);
      if (!lv.ok()) return void(exit_code = fail(lv.status()));
      std::copy(lv->data, lv->data + n * V, all.begin());
    } else {
      for (int64_t i = 0; i < n; ++i) {
        auto lv = r.decode(0, (*ids)[static_cast<size_t>(i)], i);
        if (!lv.ok()) return void(exit_code = fail(lv.status()));
        std::copy(lv->data, lv->data + V, all.begin() + i * V);
      }
    }
    if (auto st = write_npy_f32(o->out, all.data(), {n, V}); !st.ok()) return void(exit_code = fail(st));
    const float* last = all.data() + (n - 1) * V;
    std::vector<int32_t> idx(static_cast<size_t>(V));
    std::iota(idx.begin(), idx.end(), 0);
    const int64_t k = std::min<int64_t>(5, V);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return last[a] > last[b] || (last[a] == last[b] && a < b); });
    std::printf("wrote %s [%lld, %lld]; top-5 of last row:", o->out.c_str(), static_cast<long long>(n),
                static_cast<long long>(V));
    for (int64_t i = 0; i < k; ++i) std::printf(" %d (%.4f)", idx[static_cast<size_t>(i)], last[idx[static_cast<size_t>(i)]]);
    std::printf("\n");
    if (r.runtime_config().profile) std::fputs(r.profiler().report(o->mode).c_str(), stderr);
  });
}

}  // namespace ferrum::cli
