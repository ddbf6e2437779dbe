#include "ferrum/config.h"

#include <fmt/format.h>

#include <cstdlib>

namespace ferrum {

namespace {
Status env_int(const char* name, int64_t lo, int64_t hi, int64_t* out) {
  const char* v = std::getenv(name);
  if (!v || !*v) return {};
  char* end = nullptr;
  long long x = std::strtoll(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi)
    return Error(fmt::format("environment {}='{}': expected an integer in [{}, {}]", name, v, lo, hi));
  *out = x;
  return {};
}
Status env_fraction(const char* name, double* out) {
  const char* v = std::getenv(name);
  if (!v || !*v) return {};
  char* end = nullptr;
  const double x = std::strtod(v, &end);
  if (*end != '\0' || !(x > 0.0 && x <= 1.0))
    return Error(fmt::format("environment {}='{}': expected a number in (0, 1]", name, v));
  *out = x;
  return {};
}
}  // namespace

Result<RuntimeConfig> RuntimeConfig::from_env() {
  RuntimeConfig c;
  if (const char* b = std::getenv("FERRUM_BACKEND"); b && *b) c.backend = b;
  int64_t threads = c.threads, profile = 0, graphs = 1, exact = 0, mmap = 1;
  FERRUM_TRY(env_int("FERRUM_THREADS", 0, 4096, &threads));
  c.threads = static_cast<int>(threads);
  FERRUM_TRY(env_int("FERRUM_KV_CAPACITY", 0, int64_t{1} << 24, &c.kv_capacity));
  FERRUM_TRY(env_int("FERRUM_MAX_SEQS", 1, 4096, &c.max_seqs));
  FERRUM_TRY(env_int("FERRUM_KV_BLOCKS", 0, int64_t{1} << 24, &c.kv_blocks));
  FERRUM_TRY(env_int("FERRUM_KV_MEMORY_MIB", 0, int64_t{1} << 30, &c.kv_memory_mib));
  FERRUM_TRY(env_fraction("FERRUM_GPU_MEMORY_UTILIZATION", &c.gpu_memory_utilization));
  FERRUM_TRY(env_int("FERRUM_MAX_BATCH_TOKENS", 1, 1 << 20, &c.max_batch_tokens));
  FERRUM_TRY(env_int("FERRUM_PROFILE", 0, 1, &profile));
  c.profile = profile != 0;
  FERRUM_TRY(env_int("FERRUM_STEP_GRAPHS", 0, 1, &graphs));
  c.step_graphs = graphs != 0;
  FERRUM_TRY(env_int("FERRUM_MMAP", 0, 1, &mmap));
  c.mmap = mmap != 0;
  FERRUM_TRY(env_int("FERRUM_EXACT_GEMM", 0, 1, &exact));
  c.exact_gemm = exact != 0;
  return c;
}

std::string RuntimeConfig::to_string() const {
  return fmt::format(
      "backend={} threads={} kv_capacity={} max_seqs={} kv_blocks={} gpu_memory_utilization={} "
      "max_batch_tokens={} profile={} step_graphs={} mmap={} exact_gemm={}",
      backend, threads == 0 ? std::string("all") : std::to_string(threads),
      kv_capacity == 0 ? std::string("auto") : std::to_string(kv_capacity), max_seqs,
      kv_blocks == 0 ? std::string("auto") : std::to_string(kv_blocks),
      gpu_memory_utilization == 0.0 ? std::string("off") : fmt::format("{:g}", gpu_memory_utilization),
      max_batch_tokens, profile, step_graphs, mmap, exact_gemm);
}

}  // namespace ferrum
