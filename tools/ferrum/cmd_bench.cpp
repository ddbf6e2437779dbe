// ferrum bench: prompt-processing and generation throughput, llama-bench style.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
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
    std::vector<int64_t> parallel;
    std::vector<int64_t> depths{0};
    bool json = false;
    RuntimeFlags rt;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("-p,--n-prompt", o->pp, "Prompt tokens (0 to skip)");
  cmd->add_option("-n,--n-gen", o->tg, "Generated tokens (0 to skip)");
  cmd->add_option("-r,--repetitions", o->reps, "Repetitions")->check(CLI::Range(1, 1000));
  cmd->add_option(
         "--parallel", o->parallel,
         "Concurrent sequences, e.g. 1,8,32,64 (as llama-batched-bench -npl): each level prefills that "
         "many prompts of -p tokens, then decodes -n steps of one token for every sequence after its "
         "prompt; t/s counts all sequences' tokens")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  cmd->add_option(
         "-d,--n-depth", o->depths,
         "Tokens already in each sequence's cache before pp and tg, e.g. 0,4096 (as llama-bench -d); "
         "filled untimed")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{0}, int64_t{std::numeric_limits<int32_t>::max()}));
  cmd->add_flag("--json", o->json, "Print JSON instead of a table");
  o->rt.add_to(cmd);
  cmd->callback([o, &exit_code] {
    RuntimeFlags flags = o->rt;
    if (flags.max_batch_tokens < 0) flags.max_batch_tokens = std::max<int64_t>(512, o->pp);
    const int64_t max_depth = *std::max_element(o->depths.begin(), o->depths.end());
    if (flags.kv_capacity < 0) flags.kv_capacity = max_depth + o->pp + o->tg + 16;
    if (!o->parallel.empty() && flags.max_seqs < 0)
      flags.max_seqs = *std::max_element(o->parallel.begin(), o->parallel.end());
    auto rt = load_runtime(o->model, flags);
    if (!rt.ok()) return void(exit_code = fail(rt.status()));
    Runtime& r = *rt.value();
    const ModelConfig& c = r.config();
    std::mt19937 rng(42);
    std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(c.vocab_size - 1));
    using clock = std::chrono::steady_clock;
    auto seconds_since = [](clock::time_point t0) {
      return std::chrono::duration<double>(clock::now() - t0).count();
    };
    // Rows of the table: test name, concurrent sequences, depth, rates of the measured repetitions.
    struct Row {
      std::string test;
      int64_t seqs, depth;
      std::vector<double> rates;
    };
    std::vector<Row> rows;
    const std::vector<int64_t> levels = o->parallel.empty() ? std::vector<int64_t>{1} : o->parallel;
    for (int64_t depth : o->depths)
      for (int64_t n_seqs : levels) {
        std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(n_seqs)), context(prompts.size());
        for (auto& p : prompts) {
          p.resize(static_cast<size_t>(std::max<int64_t>(o->pp, 1)));
          for (auto& t : p) t = tok(rng);
        }
        for (auto& c : context) {
          c.resize(static_cast<size_t>(depth));
          for (auto& t : c) t = tok(rng);
        }
        // Empties the cache, then fills each sequence with its `depth` context tokens (untimed).
        auto restart = [&]() -> Status {
          r.reset();
          if (depth == 0) return {};
          for (int64_t q = 0; q < n_seqs; ++q)
            if (auto lv = r.prefill(q, context[size_t(q)]); !lv.ok()) return lv.status();
          return {};
        };
        const std::string at = depth > 0 ? fmt::format(" @ d{}", depth) : "";
        Row pp_row{fmt::format("pp{}{}", o->pp, at), n_seqs, depth, {}},
            tg_row{fmt::format("tg{}{}", o->tg, at), n_seqs, depth, {}};
        // One warm-up round (page in weights, grow buffers, record step graphs), then the measured
        // repetitions.
        for (int64_t rep = -1; rep < o->reps; ++rep) {
          if (Status st = restart(); !st.ok()) return void(exit_code = fail(st));
          if (o->pp > 0) {
            auto t0 = clock::now();
            for (int64_t q = 0; q < n_seqs; ++q)
              if (auto lv = r.prefill(q, prompts[size_t(q)]); !lv.ok())
                return void(exit_code = fail(lv.status()));
            if (rep >= 0) pp_row.rates.push_back(double(o->pp * n_seqs) / seconds_since(t0));
          }
          if (o->tg > 0) {
            // As llama-bench, plain tg decodes after the depth's context only (the cache is refilled
            // when a prompt went in); as llama-batched-bench, --parallel decodes after the prompts.
            const bool after_prompt = !o->parallel.empty() && o->pp > 0;
            if (!after_prompt && o->pp > 0)
              if (Status st = restart(); !st.ok()) return void(exit_code = fail(st));
            const int64_t pos0 = depth + (after_prompt ? o->pp : 0);
            std::vector<Runtime::DecodeItem> items;
            for (int64_t q = 0; q < n_seqs; ++q) items.push_back({q, prompts[size_t(q)][0], pos0});
            auto t0 = clock::now();
            // Greedy decoding as the server runs it: the backend picks the tokens (Runtime::step_greedy).
            for (int64_t i = 0; i < o->tg; ++i) {
              auto ids = r.decode_batch_greedy(items);
              if (!ids.ok()) return void(exit_code = fail(ids.status()));
              for (size_t q = 0; q < items.size(); ++q) {
                if ((*ids)[q] < 0)
                  return void(exit_code = fail(Error("decode: the largest logit is not finite")));
                items[q].token = (*ids)[q];
                items[q].pos = pos0 + i + 1;
              }
            }
            if (rep >= 0) tg_row.rates.push_back(double(o->tg * n_seqs) / seconds_since(t0));
          }
        }
        if (!pp_row.rates.empty()) rows.push_back(std::move(pp_row));
        if (!tg_row.rates.empty()) rows.push_back(std::move(tg_row));
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
    if (o->json) {
      std::printf("[");
      for (size_t i = 0; i < rows.size(); ++i) {
        const Stat st = stats(rows[i].rates);
        std::printf(
            "%s{\"model\": \"%s\", \"size_bytes\": %zu, \"type\": \"%s\", \"threads\": \"%s\", \"backend\": "
            "\"%s\", "
            "\"test\": \"%s\", \"sequences\": %lld, \"depth\": %lld, \"tokens_per_s\": %.3f, \"stddev\": "
            "%.3f, "
            "\"repetitions\": %lld}",
            i ? ", " : "", name.c_str(), bytes, type_str.c_str(), th.c_str(),
            r.runtime_config().backend.c_str(), rows[i].test.c_str(), (long long)rows[i].seqs,
            (long long)rows[i].depth, st.mean, st.sd, (long long)o->reps);
      }
      std::printf("]\n");
    } else {
      std::printf("| %-28s | %10s | %-12s | %7s | %-7s | %4s | %14s | %20s |\n", "model", "size", "type",
                  "backend", "threads", "seqs", "test", "t/s");
      std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(30, '-').c_str(), std::string(12, '-').c_str(),
                  std::string(14, '-').c_str(), std::string(9, '-').c_str(), std::string(9, '-').c_str(),
                  std::string(6, '-').c_str(), std::string(16, '-').c_str(), std::string(22, '-').c_str());
      for (auto& row : rows) {
        const Stat st = stats(row.rates);
        std::printf("| %-28s | %7.2f MiB | %-12s | %7s | %-7s | %4lld | %14s | %11.2f ± %6.2f |\n",
                    name.c_str(), double(bytes) / (1 << 20), type_str.c_str(),
                    r.runtime_config().backend.c_str(), th.c_str(), (long long)row.seqs, row.test.c_str(),
                    st.mean, st.sd);
      }
    }
  });
}

}  // namespace ferrum::cli
