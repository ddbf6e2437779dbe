// The KV pool's size: explicit blocks, max_seqs full sequences, the --kv-memory budget (soft: at least one
// sequence) and what --gpu-memory-utilization leaves on the device (hard: an error below one sequence).
#include "runtime/kv_sizing.h"

#include <gtest/gtest.h>

#include "ferrum/runtime.h"
#include "test_util.h"

namespace ferrum::testing {
namespace {

// 8 blocks a sequence, 4 sequences, 1 MiB a block, 3 MiB of rings.
KvSizing base() {
  return {.blocks_per_seq = 8,
          .max_seqs = 4,
          .kv_blocks = 0,
          .ring_bytes = 3 << 20,
          .block_bytes = 1 << 20,
          .memory_limit = std::nullopt,
          .device_budget = std::nullopt};
}

TEST(KvSizing, MaxSeqsFullSequencesWithoutLimits) { EXPECT_EQ(kv_pool_blocks(base()).value(), 32); }

TEST(KvSizing, ExplicitBlocksWin) {
  KvSizing s = base();
  s.kv_blocks = 5;
  s.device_budget = 0;  // would be an error
  EXPECT_EQ(kv_pool_blocks(s).value(), 5);
}

TEST(KvSizing, MemoryLimitIsSoftAndCountsRings) {
  KvSizing s = base();
  s.memory_limit = int64_t{3 + 20} << 20;  // rings, then 20 blocks
  EXPECT_EQ(kv_pool_blocks(s).value(), 20);
  s.memory_limit = int64_t{1} << 20;  // not even the rings: still one sequence
  EXPECT_EQ(kv_pool_blocks(s).value(), 8);
}

TEST(KvSizing, DeviceBudgetIsHard) {
  KvSizing s = base();
  s.device_budget = (int64_t{3 + 12} << 20) + 1000;  // rings and 12 blocks (and a part of one)
  EXPECT_EQ(kv_pool_blocks(s).value(), 12);
  s.device_budget = int64_t{1} << 40;  // never more than max_seqs sequences use
  EXPECT_EQ(kv_pool_blocks(s).value(), 32);
  s.memory_limit = int64_t{3 + 10} << 20;  // the smaller of both
  EXPECT_EQ(kv_pool_blocks(s).value(), 10);
  s.memory_limit.reset();
  s.device_budget = int64_t{3 + 7} << 20;  // one block short of a sequence
  const auto r = kv_pool_blocks(s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--gpu-memory-utilization"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("128 tokens"), std::string::npos) << r.status().message();
  s.device_budget = -(int64_t{1} << 30);  // the weights alone exceed the share
  EXPECT_FALSE(kv_pool_blocks(s).ok());
}

// A host backend has no device memory to size from: the option is an error, not ignored.
TEST(KvSizing, GpuMemoryUtilizationNeedsAGpuBackend) {
  const std::string rel = "models/stories260K.gguf";
  FERRUM_REQUIRE_SHARED(rel);
  RuntimeConfig cfg;
  cfg.backend = "cpu";
  cfg.gpu_memory_utilization = 0.5;
  const auto r = Runtime::load(shared_path(rel), cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("needs a GPU backend"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace ferrum::testing
