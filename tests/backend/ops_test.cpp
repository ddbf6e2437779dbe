// The op contract: every backend computes what the scalar reference backend computes, on awkward
// shapes (1 token, odd sizes, GQA 1:1 / 2:1 / 6:1, head_dim 48/64/128, paged block tables).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "backend/backend.h"
#include "core/half.h"
#include "test_util.h"

namespace ferrum::testing {
namespace {

// Host buffers are valid device memory for the host backends under test; a GPU backend's test
// runs through the same helpers with uploads (see the CUDA test target).
struct Buf {
  std::vector<float> v;
  int64_t rows, cols;
  Buf(int64_t r, int64_t c, std::mt19937& rng, float scale = 1.0f) : v(static_cast<size_t>(r * c)), rows(r), cols(c) {
    std::normal_distribution<float> d(0.0f, scale);
    for (auto& x : v) x = d(rng);
  }
  Tensor t() { return Tensor::f32(v.data(), rows, cols); }
};

class OpContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto b = create_backend(GetParam(), 2);
    ASSERT_TRUE(b.ok()) << b.status().message();
    be = std::move(b).value();
    auto r = create_backend("reference", 1);
    ref = std::move(r).value();
  }
  std::unique_ptr<Backend> be, ref;
  std::mt19937 rng{1234};
};

void expect_close(const std::vector<float>& a, const std::vector<float>& b, float rel, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  const float bound = rel * std::max(1.0f, max_abs(b.data(), b.size()));
  EXPECT_LE(max_abs_diff(a.data(), b.data(), a.size()), bound) << what;
}

TEST_P(OpContract, RmsNormAndFusedAdd) {
  for (int64_t n : {1, 7, 64, 100, 4096 + 3}) {
    for (int64_t rows : {1, 3, 17}) {
      Buf x(rows, n, rng), y(rows, n, rng), w(1, n, rng), o1(rows, n, rng), o2(rows, n, rng);
      be->rms_norm(x.t(), w.t(), 1e-6f, o1.t());
      ref->rms_norm(x.t(), w.t(), 1e-6f, o2.t());
      expect_close(o1.v, o2.v, 1e-5f, "rms_norm n=" + std::to_string(n));
      Buf x2 = x;
      be->add_rms_norm(x.t(), y.t(), w.t(), 1e-5f, o1.t());
      ref->add_rms_norm(x2.t(), y.t(), w.t(), 1e-5f, o2.t());
      expect_close(x.v, x2.v, 1e-6f, "add_rms_norm residual");
      expect_close(o1.v, o2.v, 1e-5f, "add_rms_norm n=" + std::to_string(n));
    }
  }
}

TEST_P(OpContract, LayerNormGeluSiluScale) {
  for (int64_t n : {1, 33, 384}) {
    Buf x(5, n, rng), w(1, n, rng), b(1, n, rng), o1(5, n, rng), o2(5, n, rng), u(5, n, rng);
    be->layer_norm(x.t(), w.t(), b.t(), 1e-12f, o1.t());
    ref->layer_norm(x.t(), w.t(), b.t(), 1e-12f, o2.t());
    expect_close(o1.v, o2.v, 1e-5f, "layer_norm");
    be->silu_mul(x.t(), u.t(), o1.t());
    ref->silu_mul(x.t(), u.t(), o2.t());
    expect_close(o1.v, o2.v, 1e-5f, "silu_mul");
    be->gelu_tanh_mul(x.t(), u.t(), o1.t());
    ref->gelu_tanh_mul(x.t(), u.t(), o2.t());
    expect_close(o1.v, o2.v, 1e-5f, "gelu_tanh_mul");
    Buf a = x, c = x;
    be->gelu_erf(a.t());
    ref->gelu_erf(c.t());
    expect_close(a.v, c.v, 1e-5f, "gelu_erf");
    be->scale(a.t(), 0.37f);
    ref->scale(c.t(), 0.37f);
    expect_close(a.v, c.v, 1e-6f, "scale");
    be->add_bias(a.t(), b.t());
    ref->add_bias(c.t(), b.t());
    expect_close(a.v, c.v, 1e-6f, "add_bias");
  }
}

TEST_P(OpContract, EmbedGatherMatmulFloatTypes) {
  for (DType type : {DType::F32, DType::F16, DType::BF16}) {
    for (int64_t k : {32, 64, 96, 4096}) {
      for (int64_t rows : {1, 7, 33, 259}) {
        for (int64_t tokens : {1, 2, 5, 17}) {
          Buf wf(rows, k, rng), x(tokens, k, rng), o1(tokens, rows, rng), o2(tokens, rows, rng);
          std::vector<uint16_t> w16(wf.v.size());
          for (size_t i = 0; i < w16.size(); ++i)
            w16[i] = type == DType::F16 ? fp32_to_fp16(wf.v[i]) : fp32_to_bf16(wf.v[i]);
          void* data = type == DType::F32 ? static_cast<void*>(wf.v.data()) : static_cast<void*>(w16.data());
          Tensor w = Tensor::matrix_view(type, data, rows, k);
          be->matmul(x.t(), w, o1.t());
          ref->matmul(x.t(), w, o2.t());
          expect_close(o1.v, o2.v, 2e-5f * std::sqrt(float(k)),
                       std::string(dtype_name(type)) + " k=" + std::to_string(k) + " rows=" + std::to_string(rows) +
                           " tokens=" + std::to_string(tokens));
        }
      }
      std::vector<int32_t> ids = {0, 3, 1, 0};
      if (k != 64) continue;
      Buf table(4, k, rng), e1(4, k, rng), e2(4, k, rng);
      be->embed(Tensor::f32(table.v.data(), 4, k), ids.data(), e1.t());
      ref->embed(Tensor::f32(table.v.data(), 4, k), ids.data(), e2.t());
      EXPECT_EQ(e1.v, e2.v);
      std::vector<int32_t> rows = {3, 0};
      Buf g1(2, k, rng), g2(2, k, rng);
      be->gather_rows(e1.t(), rows.data(), g1.t());
      ref->gather_rows(e2.t(), rows.data(), g2.t());
      EXPECT_EQ(g1.v, g2.v);
    }
  }
}

TEST_P(OpContract, Rope) {
  for (RopeStyle style : {RopeStyle::Neox, RopeStyle::Adjacent}) {
    for (int64_t hd : {8, 48, 64, 128}) {
      const int64_t heads = 3, rope_dim = hd == 48 ? 32 : hd;  // one partial-rotary case
      std::vector<float> inv(static_cast<size_t>(rope_dim / 2));
      for (size_t i = 0; i < inv.size(); ++i) inv[i] = std::pow(10000.0f, -2.0f * float(i) / float(rope_dim));
      RopeParams p{hd, rope_dim, style, inv.data()};
      std::vector<int32_t> pos = {0, 1, 7, 511, 4000};
      Buf x(5, heads * hd, rng);
      Buf y = x;
      be->rope(x.t(), heads, p, pos.data());
      ref->rope(y.t(), heads, p, pos.data());
      expect_close(x.v, y.v, 1e-5f, "rope hd=" + std::to_string(hd));
    }
  }
}

struct AttnShape {
  int64_t heads, kv_heads, hd;
};

TEST_P(OpContract, PagedAttentionOverRaggedBatch) {
  for (AttnShape s : {AttnShape{4, 4, 64}, AttnShape{4, 2, 48}, AttnShape{12, 2, 128}, AttnShape{6, 1, 64}}) {
    for (int64_t window : {0, 5}) {
      const int64_t bs = 16, n_blocks = 12, kvd = s.kv_heads * s.hd;
      Buf kc(n_blocks * bs, kvd, rng), vc(n_blocks * bs, kvd, rng);
      // Two sequences with scattered, non-consecutive blocks: seq 0 holds 37 tokens, seq 1 holds 3;
      // the step has seq 0's last 2 tokens (positions 35, 36) and seq 1's single token (position 2).
      std::vector<int32_t> tables = {7, 2, 10, 0, 5, 0, 0, 0};
      // Causal rows see up to their own position; the last row sees its whole sequence (encoder).
      std::vector<int32_t> positions = {35, 36, 0}, kv_end = {36, 37, 3}, seq_index = {0, 0, 1};
      AttentionLayout L{3, positions.data(), kv_end.data(), seq_index.data(), tables.data(), 4, bs};
      AttentionParams p{s.heads, s.kv_heads, s.hd, 1.0f / std::sqrt(float(s.hd)), window};
      Buf q(3, s.heads * s.hd, rng), o1(3, s.heads * s.hd, rng), o2(3, s.heads * s.hd, rng);
      be->attention(q.t(), kc.t(), vc.t(), L, p, o1.t());
      ref->attention(q.t(), kc.t(), vc.t(), L, p, o2.t());
      expect_close(o1.v, o2.v, 1e-5f,
                   "attention heads=" + std::to_string(s.heads) + "/" + std::to_string(s.kv_heads) +
                       " hd=" + std::to_string(s.hd) + " window=" + std::to_string(window));
      // kv_write lands rows at the requested slots only.
      Buf k(2, kvd, rng), v(2, kvd, rng);
      Buf kc2 = kc, vc2 = vc;
      std::vector<int32_t> slots = {5, 170};
      be->kv_write(kc.t(), vc.t(), k.t(), v.t(), slots.data());
      ref->kv_write(kc2.t(), vc2.t(), k.t(), v.t(), slots.data());
      EXPECT_EQ(kc.v, kc2.v);
      EXPECT_EQ(vc.v, vc2.v);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, OpContract, ::testing::Values("cpu"));

}  // namespace
}  // namespace ferrum::testing
