// The KV manager's bookkeeping: pool blocks, sliding-window rings, truncation.
#include <gtest/gtest.h>

#include "backend/backend.h"
#include "kv/kv_cache.h"

namespace ferrum {
namespace {

std::unique_ptr<Backend> host_backend() {
  auto b = create_backend("reference", 1);
  EXPECT_TRUE(b.ok()) << b.status().message();
  return std::move(b).value();
}

TEST(KvCache, WindowedLayersTakeRingsNotPoolBlocks) {
  auto be = host_backend();
  // Layers 0 and 2 are windowed (8 keys) with rings of 32 rows; layer 1 takes pool blocks.
  KvWindow w{{true, false, true}, 8, 32, 2};
  auto kv = KvCache::create(*be, 3, 4, 10, 160, w);
  ASSERT_TRUE(kv.ok()) << kv.status().message();
  KvCache& c = *kv.value();
  EXPECT_EQ(c.k(0).rows(), 2 * 32);
  EXPECT_EQ(c.k(1).rows(), 10 * KvCache::kBlockSize);
  EXPECT_EQ(c.v(2).rows(), 2 * 32);
  EXPECT_EQ(c.bytes(), size_t{2} * 4 * sizeof(float) * (2 * 64 + 160));
  EXPECT_TRUE(c.windowed(0) && !c.windowed(1) && c.windowed(2));
  EXPECT_EQ(c.ring_blocks(), 2);

  ASSERT_TRUE(c.reserve(7, 40).ok());
  ASSERT_TRUE(c.reserve(9, 1).ok());
  EXPECT_NE(c.ring(7), c.ring(9));
  EXPECT_GE(c.ring(7), 0);
  // A third sequence finds no ring, and says so.
  const Status st = c.reserve(11, 1);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("sliding-window KV rings"), std::string::npos) << st.message();
  // Releasing one frees its ring for the next sequence.
  const int32_t ring9 = c.ring(9);
  c.release(9);
  ASSERT_TRUE(c.reserve(11, 1).ok());
  EXPECT_EQ(c.ring(11), ring9);
}

TEST(KvCache, TruncationKeepsOnlyWhatTheRingStillHolds) {
  auto be = host_backend();
  KvWindow w{{true}, 8, 32, 1};
  auto kv = KvCache::create(*be, 1, 4, 10, 160, w);
  ASSERT_TRUE(kv.ok());
  KvCache& c = *kv.value();
  ASSERT_TRUE(c.reserve(0, 100).ok());
  c.set_length(0, 100);
  // Position 90 needs positions 83..89; rows of 83.. were last written by positions 83 + 32 = 115
  // > 100, so they are intact.
  EXPECT_EQ(c.truncate(0, 90), 90);
  c.set_length(0, 100);
  // Position 70 needs 63..69; 63 + 32 = 95 < 100 was written over it.
  EXPECT_EQ(c.truncate(0, 70), 0);
  EXPECT_EQ(c.length(0), 0);
  // Without rings every prefix stays.
  auto plain = KvCache::create(*be, 1, 4, 10, 160);
  ASSERT_TRUE(plain.ok());
  ASSERT_TRUE(plain.value()->reserve(0, 100).ok());
  plain.value()->set_length(0, 100);
  EXPECT_EQ(plain.value()->truncate(0, 5), 5);
}

}  // namespace
}  // namespace ferrum
