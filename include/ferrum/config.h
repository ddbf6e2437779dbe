// Runtime options, built once (CLI flags over FERRUM_* environment over defaults) and passed down.
// Hot paths read these fields; nothing reads the environment after start-up.
#pragma once

#include <cstdint>
#include <string>

#include "ferrum/status.h"

namespace ferrum {

struct RuntimeConfig {
  std::string backend = "cpu";          // cpu | reference (| cuda when built with it)
  int threads = 0;                      // 0: all cores
  int64_t kv_capacity = 0;              // tokens per sequence; 0: min(model context, 4096)
  int64_t max_seqs = 4;                 // sequences that may run in one step
  int64_t kv_blocks = 0;                // KV pool in 16-token blocks; 0: enough for max_seqs full sequences,
  int64_t kv_memory_mib = 0;            //   but at most this much KV memory, sliding-window rings included
                                        //   (0: no limit), and at least one sequence
  double gpu_memory_utilization = 0.0;  // GPU: the share of the device's memory this process may hold
                                        //   (weights, buffers, KV); the KV pool gets at most what is left
                                        //   after the weights and buffers (0: no such limit)
  int64_t max_batch_tokens = 512;       // tokens per forward step; longer prompts are chunked
  bool profile = false;                 // per-stage timings
  bool step_graphs = true;  // record decode steps once per batch size and replay them (CUDA graphs)
  bool mmap = true;         // CPU: use the weights from a mapping of the file; false (--no-mmap)
                            //   copies them into huge-page memory (faster decode, slower start)
  bool exact_gemm = false;  // CUDA: products keep float32 accuracy: prefill (over 64 tokens) as
                            //   three f16 products of split operands instead of one product of
                            //   f16-rounded weights and activations, and Q4_K decode (up to 64
                            //   tokens) and Q4_K/Q6_K MoE experts against float activations
                            //   instead of 8-bit ones

  // Defaults overridden by FERRUM_BACKEND, FERRUM_THREADS, FERRUM_KV_CAPACITY, FERRUM_MAX_SEQS,
  // FERRUM_KV_BLOCKS, FERRUM_KV_MEMORY_MIB, FERRUM_GPU_MEMORY_UTILIZATION, FERRUM_MAX_BATCH_TOKENS,
  // FERRUM_PROFILE, FERRUM_STEP_GRAPHS, FERRUM_MMAP, FERRUM_EXACT_GEMM (0/1). A malformed value is an error
  // naming the variable.
  static Result<RuntimeConfig> from_env();
  std::string to_string() const;
};

}  // namespace ferrum
