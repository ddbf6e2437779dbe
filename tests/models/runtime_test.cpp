// Runtime API behaviour: batched decode equals single decodes bit for bit, KV capacity and pool
// limits are errors (never a crash or an overwrite), released KV is reused, bad ids are rejected.
#include "ferrum/runtime.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "core/mapped_file.h"
#include "fixture_util.h"

namespace ferrum::testing {
namespace {

constexpr const char* kModel = "fixtures/hf/qwen3";
constexpr size_t KvChunk = 16;  // one KV block

std::unique_ptr<Runtime> load(int64_t kv_capacity, int64_t max_seqs, const std::string& model = kModel) {
  RuntimeConfig cfg;
  cfg.backend = test_backend();
  cfg.kv_capacity = kv_capacity;
  cfg.max_seqs = max_seqs;
  auto r = Runtime::load(shared_path(model), cfg);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : nullptr;
}

std::vector<float> row0(const Result<LogitsView>& lv) {
  EXPECT_TRUE(lv.ok()) << lv.status().message();
  if (!lv.ok()) return {};
  return std::vector<float>(lv->data, lv->data + lv->vocab);
}

// A dense decoder, and a mixture of experts whose sequences share some experts in the batched step
// (each decodes a different token, so the routing differs too).
class BatchedDecode : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchedDecode, IsBitIdenticalToSingleDecode) {
  const std::string model = "fixtures/hf/" + GetParam();
  FERRUM_REQUIRE_SHARED(model);
  const std::vector<std::vector<int32_t>> prompts = {
      {5, 17, 300}, {9}, {1, 2, 3, 4, 5, 6, 7}, {800, 3}, {77, 78, 79}};
  auto r = load(64, static_cast<int64_t>(prompts.size()), model);
  ASSERT_TRUE(r);
  // Alone: each sequence prefilled then decoded by itself.
  std::vector<std::vector<float>> alone;
  for (size_t s = 0; s < prompts.size(); ++s) {
    r->reset();
    ASSERT_TRUE(r->prefill(0, prompts[s]).ok());
    alone.push_back(
        row0(r->decode(0, 42 + static_cast<int32_t>(s), static_cast<int64_t>(prompts[s].size()))));
  }
  // Together: all prefilled, then one decode_batch step.
  r->reset();
  std::vector<Runtime::DecodeItem> items;
  for (size_t s = 0; s < prompts.size(); ++s) {
    ASSERT_TRUE(r->prefill(static_cast<int64_t>(s), prompts[s]).ok());
    items.push_back(
        {static_cast<int64_t>(s), 42 + static_cast<int32_t>(s), static_cast<int64_t>(prompts[s].size())});
  }
  auto lv = r->decode_batch(items);
  ASSERT_TRUE(lv.ok()) << lv.status().message();
  ASSERT_EQ(lv->rows, static_cast<int64_t>(prompts.size()));
  for (size_t s = 0; s < prompts.size(); ++s)
    EXPECT_EQ(0,
              std::memcmp(lv->row(static_cast<int64_t>(s)), alone[s].data(), alone[s].size() * sizeof(float)))
        << "sequence " << s;
}

INSTANTIATE_TEST_SUITE_P(Runtime, BatchedDecode, ::testing::Values("qwen3", "qwen3_moe"));

// Greedy steps return, for each row, the first maximum of the logits that decode_batch returns for the
// same step (rewinding each sequence before the second run).
TEST(Runtime, GreedyStepsPickTheFirstLargestLogit) {
  FERRUM_REQUIRE_SHARED(kModel);
  auto r = load(64, 3);
  ASSERT_TRUE(r);
  std::vector<Runtime::DecodeItem> items;
  for (int64_t s = 0; s < 3; ++s) {
    const std::vector<int32_t> prompt = {static_cast<int32_t>(5 + s), 17, static_cast<int32_t>(300 + 40 * s)};
    ASSERT_TRUE(r->prefill(s, prompt).ok());
    items.push_back({s, static_cast<int32_t>(42 + s), 3});
  }
  for (int step = 0; step < 4; ++step) {
    auto lv = r->decode_batch(items);
    ASSERT_TRUE(lv.ok()) << lv.status().message();
    std::vector<int32_t> expect;
    for (int64_t i = 0; i < lv->rows; ++i)
      expect.push_back(
          static_cast<int32_t>(std::max_element(lv->row(i), lv->row(i) + lv->vocab) - lv->row(i)));
    for (const auto& it : items) ASSERT_EQ(r->truncate(it.seq, it.pos), it.pos);
    auto ids = r->decode_batch_greedy(items);
    ASSERT_TRUE(ids.ok()) << ids.status().message();
    EXPECT_EQ(std::vector<int32_t>(ids->begin(), ids->end()), expect) << "step " << step;
    for (size_t i = 0; i < items.size(); ++i) {
      EXPECT_EQ(r->seq_length(items[i].seq), items[i].pos + 1);
      items[i].token = expect[i];
      ++items[i].pos;
    }
  }
}

// Backends that record decode steps (CUDA graphs) replay them from the third step of a batch size
// on: greedy decoding of 1 and 3 sequences must give the same logits, bit for bit, as running every
// step op by op. (On backends that do not record, both runs are op by op.)
class RecordedSteps : public ::testing::TestWithParam<std::string> {};

TEST_P(RecordedSteps, ReplayedDecodeStepsEqualOpByOpSteps) {
  const std::string model = "fixtures/hf/" + GetParam();
  FERRUM_REQUIRE_SHARED(model);
  auto run = [&](bool graphs) {
    RuntimeConfig cfg;
    cfg.backend = test_backend();
    cfg.kv_capacity = 64;
    cfg.max_seqs = 3;
    cfg.step_graphs = graphs;
    auto r = Runtime::load(shared_path(model), cfg);
    EXPECT_TRUE(r.ok()) << r.status().message();
    std::vector<float> all;
    if (!r.ok()) return all;
    Runtime& rt = *r.value();
    for (int64_t n_seqs : {1, 3}) {
      rt.reset();
      std::vector<Runtime::DecodeItem> items;
      for (int64_t s = 0; s < n_seqs; ++s) {
        const std::vector<int32_t> prompt = {static_cast<int32_t>(5 + s), 17, 300};
        auto lv = rt.prefill(s, prompt);
        EXPECT_TRUE(lv.ok());
        if (!lv.ok()) return all;
        items.push_back(
            {s, static_cast<int32_t>(std::max_element(lv->row(0), lv->row(0) + lv->vocab) - lv->row(0)), 3});
      }
      for (int step = 0; step < 6; ++step) {
        auto lv = rt.decode_batch(items);
        EXPECT_TRUE(lv.ok()) << lv.status().message();
        if (!lv.ok()) return all;
        all.insert(all.end(), lv->data, lv->data + lv->rows * lv->vocab);
        for (size_t i = 0; i < items.size(); ++i) {
          const float* row = lv->row(static_cast<int64_t>(i));
          items[i].token = static_cast<int32_t>(std::max_element(row, row + lv->vocab) - row);
          ++items[i].pos;
        }
      }
    }
    return all;
  };
  const std::vector<float> replayed = run(true), op_by_op = run(false);
  ASSERT_FALSE(op_by_op.empty());
  ASSERT_EQ(replayed.size(), op_by_op.size());
  EXPECT_EQ(0, std::memcmp(replayed.data(), op_by_op.data(), op_by_op.size() * sizeof(float)));
}

INSTANTIATE_TEST_SUITE_P(Runtime, RecordedSteps, ::testing::Values("qwen3", "qwen3_moe", "gemma3"));

TEST(Runtime, WritingPastCapacityIsAnErrorNamingTheSequence) {
  FERRUM_REQUIRE_SHARED(kModel);
  auto r = load(20, 2);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kv_capacity(), 20);
  std::vector<int32_t> ids(20, 7);
  ASSERT_TRUE(r->prefill(3, ids).ok());
  auto lv = r->decode(3, 7, 20);
  ASSERT_FALSE(lv.ok());
  EXPECT_NE(lv.status().message().find("sequence 3"), std::string::npos) << lv.status().message();
  EXPECT_NE(lv.status().message().find("20"), std::string::npos);
  // The sequence is intact: decoding at an earlier position (rewind) still works.
  EXPECT_TRUE(r->decode(3, 7, 19).ok());
  std::vector<int32_t> too_long(21, 7);
  EXPECT_FALSE(r->prefill(4, too_long).ok());
}

TEST(Runtime, PoolExhaustionIsAnErrorAndReleaseReusesBlocks) {
  FERRUM_REQUIRE_SHARED(kModel);
  auto r = load(32, 2);  // 2 blocks per sequence, 4 blocks in the pool
  ASSERT_TRUE(r);
  std::vector<int32_t> ids(32, 11);
  ASSERT_TRUE(r->prefill(0, ids).ok());
  ASSERT_TRUE(r->prefill(1, ids).ok());
  EXPECT_EQ(r->kv_free_blocks(), 0);
  auto lv = r->prefill(2, ids);
  ASSERT_FALSE(lv.ok());
  EXPECT_NE(lv.status().message().find("exhausted"), std::string::npos) << lv.status().message();
  r->release(0);
  EXPECT_EQ(r->kv_free_blocks(), 2);
  // Reused blocks give the same logits as fresh ones (no stale state leaks in).
  auto a = row0(r->prefill(2, ids));
  r->reset();
  auto b = row0(r->prefill(5, ids));
  EXPECT_EQ(a, b);
}

TEST(Runtime, RejectsBadTokensAndPositions) {
  FERRUM_REQUIRE_SHARED(kModel);
  auto r = load(64, 2);
  ASSERT_TRUE(r);
  std::vector<int32_t> bad = {1, 1000};
  auto lv = r->prefill(0, bad);
  ASSERT_FALSE(lv.ok());
  EXPECT_NE(lv.status().message().find("1000"), std::string::npos);
  EXPECT_FALSE(r->decode(0, 1, 5).ok());  // position past the sequence's length
  EXPECT_FALSE(r->decode(0, -1, 0).ok());
  std::vector<Runtime::DecodeItem> dup = {{1, 3, 0}, {1, 4, 0}};
  EXPECT_FALSE(r->decode_batch(dup).ok());
}

TEST(Runtime, LongPromptsAreChunkedWithoutChangingResults) {
  FERRUM_REQUIRE_SHARED(kModel);
  std::vector<int32_t> ids;
  for (int i = 0; i < 100; ++i) ids.push_back((i * 37) % 1000);
  RuntimeConfig small, large;
  small.backend = large.backend = test_backend();
  small.max_batch_tokens = 16;
  auto a = Runtime::load(shared_path(kModel), small);
  auto b = Runtime::load(shared_path(kModel), large);
  ASSERT_TRUE(a.ok() && b.ok());
  auto la = row0(a.value()->prefill(0, ids));
  auto lb = row0(b.value()->prefill(0, ids));
  ASSERT_EQ(la.size(), lb.size());
  EXPECT_LE(max_abs_diff(la.data(), lb.data(), la.size()), 1e-4f * max_abs(lb.data(), lb.size()));
}

// FileAccess::Copy (--no-mmap) holds the same bytes as the mapping, 2 MiB-aligned for huge pages, and
// the model computes the same logits bit for bit from them.
TEST(Runtime, CopiedWeightsEqualMappedOnes) {
  const std::string model = "models/stories260K.gguf";
  FERRUM_REQUIRE_SHARED(model);
  auto mapped = MappedFile::open(shared_path(model), FileAccess::Map);
  auto copied = MappedFile::open(shared_path(model), FileAccess::Copy);
  ASSERT_TRUE(mapped.ok() && copied.ok());
  ASSERT_EQ(copied.value()->size(), mapped.value()->size());
  EXPECT_EQ(std::memcmp(copied.value()->data(), mapped.value()->data(), mapped.value()->size()), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(copied.value()->data()) % (size_t{2} << 20), 0u);

  const std::vector<int32_t> ids = {1, 400, 12, 77, 300, 5};
  std::vector<float> logits[2];
  for (bool mmap : {true, false}) {
    RuntimeConfig cfg = test_config();
    cfg.mmap = mmap;
    auto r = Runtime::load(shared_path(model), cfg);
    ASSERT_TRUE(r.ok()) << r.status().message();
    logits[mmap] = row0(r.value()->prefill(0, ids));
  }
  ASSERT_FALSE(logits[0].empty());
  EXPECT_EQ(logits[0], logits[1]);
}

// The KV cache is always paged; a "contiguous" sequence is one whose blocks happen to be consecutive.
// Interleaving another sequence's growth scatters the sequence's blocks over the pool; its logits
// (prefill and decode) must be exactly those of the same sequence in consecutive blocks.
class PagedKv : public ::testing::TestWithParam<std::string> {};

TEST_P(PagedKv, ScatteredBlocksGiveTheSameLogitsAsConsecutiveOnes) {
  const std::string model = "fixtures/hf/" + GetParam();
  FERRUM_REQUIRE_SHARED(model);
  std::vector<int32_t> ids;
  for (int i = 0; i < 70; ++i) ids.push_back((i * 53 + 7) % 500);
  const size_t chunk = KvChunk;
  auto run = [&](bool scatter) {
    auto r = load(128, 2, model);
    std::vector<float> rows;
    if (!r) return rows;
    std::vector<int32_t> other(chunk, 11);
    for (size_t at = 0; at < ids.size(); at += chunk) {
      const size_t n = std::min(chunk, ids.size() - at);
      if (scatter) {  // the other sequence takes the next block first
        EXPECT_TRUE(r->prefill(1, other).ok());
      }
      auto lv = r->prefill(0, std::span<const int32_t>(ids).subspan(at, n), /*all_logits=*/true);
      EXPECT_TRUE(lv.ok()) << lv.status().message();
      if (!lv.ok()) return rows;
      rows.insert(rows.end(), lv->data, lv->data + lv->rows * lv->vocab);
    }
    auto lv = r->decode(0, 42, static_cast<int64_t>(ids.size()));
    EXPECT_TRUE(lv.ok());
    if (lv.ok()) rows.insert(rows.end(), lv->data, lv->data + lv->vocab);
    return rows;
  };
  const std::vector<float> consecutive = run(false), scattered = run(true);
  ASSERT_FALSE(consecutive.empty());
  ASSERT_EQ(consecutive.size(), scattered.size());
  EXPECT_EQ(std::memcmp(consecutive.data(), scattered.data(), consecutive.size() * sizeof(float)), 0);
}

INSTANTIATE_TEST_SUITE_P(Runtime, PagedKv,
                         ::testing::Values("llama", "qwen2", "qwen3", "qwen3_moe", "gemma3"));

}  // namespace
}  // namespace ferrum::testing
