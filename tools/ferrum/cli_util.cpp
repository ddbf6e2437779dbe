#include "cli_util.h"

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace ferrum::cli {

void RuntimeFlags::add_to(CLI::App* cmd) {
  cmd->add_option("--backend", backend,
                  "Compute backend: auto | cpu | cuda[:N] | reference (default: cpu, env FERRUM_BACKEND)");
  cmd->add_option("-t,--threads", threads, "CPU threads (default: all cores, env FERRUM_THREADS)");
  cmd->add_option("--kv-capacity,--ctx-size", kv_capacity,
                  "KV tokens per sequence (default: min(model context, 4096), env FERRUM_KV_CAPACITY)");
  cmd->add_option("--max-seqs,--max-num-seqs", max_seqs,
                  "Sequences per step (default 4, env FERRUM_MAX_SEQS)");
  cmd->add_option("--kv-blocks", kv_blocks,
                  "KV pool size in 16-token blocks (default: max-seqs full contexts, env FERRUM_KV_BLOCKS)");
  cmd->add_option(
         "--gpu-memory-utilization", gpu_memory_utilization,
         "GPU: share of the device's memory the process may hold (weights, buffers, KV); the KV pool "
         "gets at most what is left after the weights and buffers (env FERRUM_GPU_MEMORY_UTILIZATION)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--device", device,
                  "CUDA device index (--backend cuda:N; implies cuda when no backend is chosen)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-batch-tokens,--max-num-batched-tokens", max_batch_tokens,
                  "Tokens per forward step (default 512)");
  cmd->add_flag("--profile", profile, "Print per-stage timings (env FERRUM_PROFILE=1)");
  cmd->add_flag(
      "--no-step-graphs", no_step_graphs,
      "Run every decode step op by op instead of replaying recorded CUDA graphs (env FERRUM_STEP_GRAPHS=0)");
  cmd->add_flag("--no-mmap", no_mmap,
                "CPU: copy the weights into huge-page memory instead of mapping the file (faster decode; env "
                "FERRUM_MMAP=0)");
  cmd->add_flag("--exact-gemm", exact_gemm,
                "CUDA: matrix products to float32 accuracy: prefill as three f16 products instead of one of "
                "f16-rounded operands, Q4_K decode against float activations instead of 8-bit ones (env "
                "FERRUM_EXACT_GEMM=1)");
}

Result<RuntimeConfig> RuntimeFlags::resolve() const {
  FERRUM_ASSIGN_OR_RETURN(RuntimeConfig c, RuntimeConfig::from_env());
  if (!backend.empty()) c.backend = backend;
  if (threads >= 0) c.threads = threads;
  if (kv_capacity >= 0) c.kv_capacity = kv_capacity;
  if (max_seqs > 0) c.max_seqs = max_seqs;
  if (kv_blocks > 0) c.kv_blocks = kv_blocks;
  if (gpu_memory_utilization > 0.0) c.gpu_memory_utilization = gpu_memory_utilization;
  if (gpu_memory_utilization == 0.0) return Error("--gpu-memory-utilization must be above 0");
  if (device >= 0) {
    // --device picks the CUDA device of --backend cuda (or auto, which then means cuda); alone (no
    // backend on the command line or in FERRUM_BACKEND) it means cuda too.
    const char* env_backend = std::getenv("FERRUM_BACKEND");
    const bool chosen = !backend.empty() || (env_backend && *env_backend);
    const std::string b = chosen ? c.backend : "cuda";
    if (b != "cuda" && b != "auto" && b.rfind("cuda:", 0) != 0)
      return Error("--device applies to the cuda backend (backend is " + b + ")");
    if (b.rfind("cuda:", 0) == 0 && b != "cuda:" + std::to_string(device))
      return Error("--device " + std::to_string(device) + " contradicts --backend " + b);
    c.backend = "cuda:" + std::to_string(device);
  }
  if (max_batch_tokens > 0) c.max_batch_tokens = max_batch_tokens;
  if (profile) c.profile = true;
  if (no_step_graphs) c.step_graphs = false;
  if (no_mmap) c.mmap = false;
  if (exact_gemm) c.exact_gemm = true;
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
    std::fprintf(stderr, "\rloading [%.*s%*s] %5.1f / %.1f MiB", filled,
                 "########################################", width - filled, "", double(done) / (1 << 20),
                 double(total) / (1 << 20));
    if (done == total) std::fprintf(stderr, "\r%*s\r", 80, "");
  });
}

int32_t argmax(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int32_t>(best);
}

std::string model_cache_dir() {
  if (const char* c = std::getenv("FERRUM_CACHE"); c && *c)
    return (std::filesystem::path(c) / "models").string();
  if (const char* h = std::getenv("HOME"); h && *h)
    return (std::filesystem::path(h) / ".cache" / "ferrum" / "models").string();
  return "";
}

Result<std::string> default_model() {
  if (const char* m = std::getenv("FERRUM_MODEL"); m && *m) {
    std::error_code ec;
    if (!std::filesystem::exists(m, ec)) return Error(std::string(m) + " (FERRUM_MODEL): model not found");
    return std::string(m);
  }
  const std::string cache = model_cache_dir();
  const std::string gemma =
      cache.empty() ? "" : (std::filesystem::path(cache) / "gemma-3-270m-q4_k_m.gguf").string();
  std::error_code ec;
  if (!gemma.empty() && std::filesystem::is_regular_file(gemma, ec)) return gemma;
  return Error(
      "no model given and no default model at " + (gemma.empty() ? "~/.cache/ferrum/models" : gemma) +
      ": run scripts/fetch_models (from the ferrum source tree) to download Gemma 3 270M there, or pass "
      "--model FILE.gguf or a Hugging Face folder, or set FERRUM_MODEL");
}

}  // namespace ferrum::cli
