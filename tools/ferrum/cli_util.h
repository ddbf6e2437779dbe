// Helpers shared by the subcommands: runtime options as flags, token lists, error reporting.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ferrum/config.h"
#include "ferrum/runtime.h"

namespace ferrum::cli {

// Flags that fill a RuntimeConfig (over FERRUM_* environment defaults).
struct RuntimeFlags {
  std::string backend;
  int threads = -1;
  int64_t kv_capacity = -1;
  int64_t max_seqs = -1;
  int64_t kv_blocks = -1;
  double gpu_memory_utilization = -1.0;
  int device = -1;
  int64_t max_batch_tokens = -1;
  bool profile = false;
  bool no_step_graphs = false;
  bool no_mmap = false;
  bool exact_gemm = false;
  void add_to(CLI::App* cmd);
  Result<RuntimeConfig> resolve() const;
};

Result<std::vector<int32_t>> parse_ids(const std::string& text);
std::string join_ids(const std::vector<int32_t>& ids);
// Prints "error: <message>" on stderr and returns the exit code 1.
int fail(const Status& st);
// Loads a model; on a terminal, a progress bar follows the weights being read.
Result<std::unique_ptr<Runtime>> load_runtime(const std::string& model, const RuntimeFlags& flags);
// Index of the largest logit (lowest index on ties).
int32_t argmax(const float* logits, int64_t n);

// ferrum's model cache, where scripts/fetch_models puts models: $FERRUM_CACHE/models, else
// ~/.cache/ferrum/models (empty when neither FERRUM_CACHE nor HOME is set).
std::string model_cache_dir();
// The model to use when no --model is given: $FERRUM_MODEL, else the Gemma 3 270M GGUF in the model
// cache; otherwise an error that says how to get it (scripts/fetch_models) or to pass --model.
Result<std::string> default_model();

}  // namespace ferrum::cli
