// ferrum bench: prompt-processing and generation throughput, llama-bench style.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <map>
#include <random>

#include "cli_util.h"
#include "commands.h"
#include "models/weights.h"

namespace ferrum::cli {

namespace {
struct Stat {
  double mean = 0, sd = 0;
};
Stat stats(const std::vector<double>& v) {
  Stat s;
  for (double x : v) s.mean += x;
  s.mean /= double(v.size());
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / double(v.size() - 1)) : 0.0;
  return s;
}
}  // namespace

void add_bench(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("bench", "Measure prefill (pp) and decode (tg) tokens/s");
  struct Opts {
    std::string model;
    int64_t pp = 128, tg = 64, reps = 3;
    bool json = false;
    RuntimeFlags rt;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("-p,--n-prompt", o->pp, "Prompt tokens (0 to skip)");
  cmd->add_option("-n,--n-gen", o->tg, "Generated tokens (0 to skip)");
  cmd->add_option("-r,--repetitions", o->reps, "Repetitions")->check(CLI::Range(1, 1000));
  cmd->add_flag("--json", o->json, "Print JSON instead of a table");
  o->rt.add_to(cmd);
  cmd->callback([o, &exit_code] {
    RuntimeFlags flags = o->rt;
    if (flags.max_batch_tokens < 0) flags.max_batch_tokens = std::max<int64_t>(512, o->pp);
    if (flags.kv_capacity < 0) flags.kv_capacity = o->pp + o->tg + 16;
    auto rt = load_runtime(o->model, flags);
    if (!rt.ok()) return void(exit_code = fail(rt.status()));
    Runtime& r = *rt.value();
    const ModelConfig& c = r.config();
    std::mt19937 rng(42);
    std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(c.vocab_size - 1));
    std::vector<int32_t> prompt(static_cast<size_t>(std::max<int64_t>(o->pp, 1)));
    for (auto& t : prompt) t = tok(rng);
    using clock = std::chrono::steady_clock;
    std::vector<double> pp_rates, tg_rates;
    // One warm-up round (page in weights, grow buffers), then the measured repetitions.
    for (int64_t rep = -1; rep < o->reps; ++rep) {
      r.reset();
      if (o->pp > 0) {
        auto t0 = clock::now();
        auto lv = r.prefill(0, prompt);
        if (!lv.ok()) return void(exit_code = fail(lv.status()));
        double s = std::chrono::duration<double>(clock::now() - t0).count();
        if (rep >= 0) pp_rates.push_back(double(o->pp) / s);
      }
      if (o->tg > 0) {
        r.reset();
        int32_t t = prompt[0];
        auto t0 = clock::now();
        for (int64_t i = 0; i < o->tg; ++i) {
          auto lv = r.decode(0, t, i);
          if (!lv.ok()) return void(exit_code = fail(lv.status()));
          t = argmax(lv->row(0), c.vocab_size);
        }
        double s = std::chrono::duration<double>(clock::now() - t0).count();
        if (rep >= 0) tg_rates.push_back(double(o->tg) / s);
      }
    }
    size_t bytes = 0;
    std::map<std::string, int> types;
    if (auto w = WeightStore::open(o->model); w.ok())
      for (auto& t : w.value()->summary()) {
        bytes += t.bytes;
        types[dtype_name(t.type)]++;
      }
    std::string type_str;
    for (auto& [k, v] : types) type_str += (type_str.empty() ? "" : "+") + k;
    const std::string name = std::filesystem::path(o->model).filename().string();
    const int threads = r.runtime_config().threads;
    const std::string th = threads > 0 ? std::to_string(threads) : "all";
    std::vector<std::pair<std::string, Stat>> rows;
    if (!pp_rates.empty()) rows.push_back({fmt::format("pp{}", o->pp), stats(pp_rates)});
    if (!tg_rates.empty()) rows.push_back({fmt::format("tg{}", o->tg), stats(tg_rates)});
    if (o->json) {
      std::printf("[");
      for (size_t i = 0; i < rows.size(); ++i)
        std::printf("%s{\"model\": \"%s\", \"size_bytes\": %zu, \"type\": \"%s\", \"threads\": \"%s\", \"backend\": \"%s\", "
                    "\"test\": \"%s\", \"tokens_per_s\": %.3f, \"stddev\": %.3f, \"repetitions\": %lld}",
                    i ? ", " : "", name.c_str(), bytes, type_str.c_str(), th.c_str(), r.runtime_config().backend.c_str(),
                    rows[i].first.c_str(), rows[i].second.mean, rows[i].second.sd, (long long)o->reps);
      std::printf("]\n");
    } else {
      std::printf("| %-28s | %10s | %-12s | %7s | %-7s | %8s | %20s |\n", "model", "size", "type", "backend", "threads",
                  "test", "t/s");
      std::printf("|%s|%s|%s|%s|%s|%s|%s|\n", std::string(30, '-').c_str(), std::string(12, '-').c_str(),
                  std::string(14, '-').c_str(), std::string(9, '-').c_str(), std::string(9, '-').c_str(),
                  std::string(10, '-').c_str(), std::string(22, '-').c_str());
      for (auto& [test, s] : rows)
        std::printf("| %-28s | %7.2f MiB | %-12s | %7s | %-7s | %8s | %11.2f ± %6.2f |\n", name.c_str(),
                    double(bytes) / (1 << 20), type_str.c_str(), r.runtime_config().backend.c_str(), th.c_str(),
                    test.c_str(), s.mean, s.sd);
    }
  });
}

}  // namespace ferrum::cli
