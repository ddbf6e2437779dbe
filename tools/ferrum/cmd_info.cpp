// ferrum info: what a model file is (architecture, dimensions, tensor types and sizes).
#include <cstdio>
#include <fmt/format.h>
#include <map>

#include "cli_util.h"
#include "commands.h"
#include "models/weights.h"

namespace ferrum::cli {

void add_info(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("info", "Describe a model: architecture, dimensions, tensors");
  struct Opts {
    std::string model;
    bool tensors = false, config = false;
    RuntimeFlags rt;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("model", o->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_flag("--tensors", o->tensors, "List every tensor");
  cmd->add_flag("--config", o->config, "Print the resolved runtime configuration");
  o->rt.add_to(cmd);
  cmd->callback([o, &exit_code] {
    auto w = WeightStore::open(o->model);
    if (!w.ok()) return void(exit_code = fail(w.status()));
    const ModelConfig& c = w.value()->config();
    std::printf("model:        %s%s\n", o->model.c_str(), c.name.empty() ? "" : (" (" + c.name + ")").c_str());
    std::printf("format:       %s\n", w.value()->is_gguf()
                                          ? fmt::format("GGUF v{}", w.value()->gguf()->version()).c_str()
                                          : "Hugging Face safetensors");
    std::printf("architecture: %s\n", c.arch.c_str());
    std::printf("layers %lld, hidden %lld, heads %lld (kv %lld, head_dim %lld), ffn %lld, vocab %lld\n",
                (long long)c.n_layers, (long long)c.hidden, (long long)c.n_heads, (long long)c.n_kv_heads,
                (long long)c.head_dim, (long long)c.intermediate, (long long)c.vocab_size);
    if (c.n_experts > 0)
      std::printf("experts %lld (top-%lld, ffn %lld)\n", (long long)c.n_experts, (long long)c.n_experts_used,
                  (long long)c.moe_intermediate);
    std::printf("context length %lld, rope theta %g (%s, dim %lld), norm eps %g, tied embeddings %s\n",
                (long long)c.max_position, c.rope_theta, c.rope_scaling.type.c_str(), (long long)c.rope_dim,
                c.norm_eps, c.tie_embeddings ? "yes" : "no");
    std::map<std::string, std::pair<int, size_t>> by_type;
    size_t total = 0;
    auto summary = w.value()->summary();
    for (auto& t : summary) {
      auto& e = by_type[dtype_name(t.type)];
      e.first++;
      e.second += t.bytes;
      total += t.bytes;
    }
    std::printf("tensors %zu, %.2f MiB:", summary.size(), double(total) / (1 << 20));
    for (auto& [name, e] : by_type) std::printf(" %s x%d (%.2f MiB)", name.c_str(), e.first, double(e.second) / (1 << 20));
    std::printf("\n");
    if (o->tensors)
      for (auto& t : summary) {
        std::string dims;
        for (size_t i = 0; i < t.dims.size(); ++i) dims += (i ? " x " : "") + std::to_string(t.dims[i]);
        std::printf("  %-40s %-5s [%s] %zu bytes\n", t.name.c_str(), dtype_name(t.type), dims.c_str(), t.bytes);
      }
    if (o->config) {
      auto rc = o->rt.resolve();
      if (!rc.ok()) return void(exit_code = fail(rc.status()));
      std::printf("runtime: %s\n", rc->to_string().c_str());
    }
  });
}

}  // namespace ferrum::cli
