#include "runtime/kv_sizing.h"

#include <fmt/format.h>

#include <algorithm>

#include "kv/kv_cache.h"

namespace ferrum {

Result<int64_t> kv_pool_blocks(const KvSizing& s) {
  if (s.kv_blocks > 0) return s.kv_blocks;
  int64_t blocks = s.blocks_per_seq * s.max_seqs;
  const auto fit = [&](int64_t budget) {
    return std::max<int64_t>(0, budget - s.ring_bytes) / s.block_bytes;
  };
  if (s.memory_limit) blocks = std::max(s.blocks_per_seq, std::min(blocks, fit(*s.memory_limit)));
  if (s.device_budget) {
    const int64_t can = fit(*s.device_budget);
    if (can < s.blocks_per_seq) {
      const double mib = 1024.0 * 1024.0;
      return Error(fmt::format(
          "--gpu-memory-utilization leaves {:.0f} MiB of device memory for the KV cache "
          "after the weights and buffers; one full sequence ({} tokens) needs {:.0f} MiB: "
          "raise it, or lower --kv-capacity",
          double(std::max<int64_t>(0, *s.device_budget)) / mib, s.blocks_per_seq * KvCache::kBlockSize,
          double(s.ring_bytes + s.blocks_per_seq * s.block_bytes) / mib));
    }
    blocks = std::min(blocks, can);
  }
  return blocks;
}

}  // namespace ferrum
