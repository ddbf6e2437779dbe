// How many 16-token blocks the KV pool gets (Runtime::load's policy, a pure function so it can be tested
// without a device).
#pragma once

#include <cstdint>
#include <optional>

#include "ferrum/status.h"

namespace ferrum {

struct KvSizing {
  int64_t blocks_per_seq = 0;  // one full sequence
  int64_t max_seqs = 1;
  int64_t kv_blocks = 0;                // given by the user (wins over everything below); 0: not given
  int64_t ring_bytes = 0;               // sliding-window rings, which come out of any budget first
  int64_t block_bytes = 0;              // one pool block over all pooled layers (K and V)
  std::optional<int64_t> memory_limit;  // --kv-memory, bytes
  // What --gpu-memory-utilization leaves for the KV cache on the device, bytes (after weights and
  // buffers): unlike memory_limit, a hard limit.
  std::optional<int64_t> device_budget;
};

// kv_blocks when given; else enough for max_seqs full sequences, within the budgets, and at least one
// full sequence. An error when the device budget cannot hold one full sequence.
Result<int64_t> kv_pool_blocks(const KvSizing& s);

}  // namespace ferrum
