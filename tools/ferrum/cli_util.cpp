#include "cli_util.h"

#include <unistd.h>

#include <charconv>
#include <cstdio>

namespace ferrum::cli {

void RuntimeFlags::add_to(CLI::App* cmd) {
  cmd->add_option("--backend", backend, "Compute backend: auto | cpu | cuda[:N] | reference (default: cpu, env FERRUM_BACKEND)");
  cmd->add_option("-t,--threads", threads, "CPU threads (default: all cores, env FERRUM_THREADS)");
  cmd->add_option("--kv-capacity,--ctx-size", kv_capacity,
                  "KV tokens per sequence (default: min(model context, 4096), env FERRUM_KV_CAPACITY)");
  cmd->add_option("--max-seqs", max_seqs, "Sequences with resident KV (default 4, env FERRUM_MAX_SEQS)");
  cmd->add_option("--max-batch-tokens", max_batch_tokens, "Tokens per forward step (default 512)");
  cmd->add_flag("--profile", profile, "Print per-stage timings (env FERRUM_PROFILE=1)");
}

Result<RuntimeConfig> RuntimeFlags::resolve() const {
  FERRUM_ASSIGN_OR_RETURN(RuntimeConfig c, RuntimeConfig::from_env());
  if (!backend.empty()) c.backend = backend;
  if (threads >= 0) c.threads = threads;
  if (kv_capacity >= 0) c.kv_capacity = kv_capacity;
  if (max_seqs > 0) c.max_seqs = max_seqs;
  if (max_batch_tokens > 0) c.max_batch_tokens = max_batch_tokens;
  if (profile) c.profile = true;
  return c;
}

Result<std::vector<int32_t>> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find(',', i);
    if (j == std::string::npos) j = text.size();
    std::string tok = text.substr(i, j - i);
    while (!tok.empty() && tok.front() == ' ') tok.erase(tok.begin());
    while (!tok.empty() && tok.back() == ' ') tok.pop_back();
    int32_t v = 0;
    auto [p, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), v);
    if (tok.empty() || ec != std::errc() || p != tok.data() + tok.size())
      return Error("invalid token id '" + tok + "' in --tokens (expected comma-separated integers)");
    ids.push_back(v);
    i = j + 1;
  }
  if (ids.empty()) return Error("--tokens is empty");
  return ids;
}

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

int fail(const Status& st) {
  std::fprintf(stderr, "error: %s\n", st.message().c_str());
  return 1;
}

Result<std::unique_ptr<Runtime>> load_runtime(const std::string& model, const RuntimeFlags& flags) {
  FERRUM_ASSIGN_OR_RETURN(RuntimeConfig cfg, flags.resolve());
  if (!isatty(fileno(stderr))) return Runtime::load(model, cfg);
  return Runtime::load(model, cfg, [](size_t done, size_t total) {
    const int width = 40, filled = total ? static_cast<int>(width * done / total) : width;
    std::fprintf(stderr, "\rloading [%.*s%*s] %5.1f / %.1f MiB", filled, "########################################",
                 width - filled, "", double(done) / (1 << 20), double(total) / (1 << 20));
    if (done == total) std::fprintf(stderr, "\r%*s\r", 80, "");
  });
}

int32_t argmax(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int32_t>(best);
}

}  // namespace ferrum::cli
