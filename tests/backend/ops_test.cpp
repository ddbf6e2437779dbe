// The op contract: every backend computes what the scalar reference backend computes, on awkward
// shapes (1 token, odd sizes, GQA 1:1 / 2:1 / 6:1, head_dim 48/64/128/256, paged block tables,
// decode-shaped and prefill-shaped attention steps).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <utility>

#include "backend/backend.h"
#include "core/half.h"
#include "device_util.h"
#include "mirror.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace ferrum::testing {
namespace {

struct Buf {
  std::vector<float> v;
  int64_t rows, cols;
  Buf(int64_t r, int64_t c, std::mt19937& rng, float scale = 1.0f)
      : v(static_cast<size_t>(r * c)), rows(r), cols(c) {
    std::normal_distribution<float> d(0.0f, scale);
    for (auto& x : v) x = d(rng);
  }
  Tensor t() { return Tensor::f32(v.data(), rows, cols); }
};

// The reference backend runs on the host buffers, the backend under test on mirrored copies.
class OpContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    FERRUM_SKIP_WITHOUT_DEVICE(GetParam());
    auto b = create_backend(GetParam(), 2);
    ASSERT_TRUE(b.ok()) << b.status().message();
    be = std::move(b).value();
    auto r = create_backend("reference", 1);
    ref = std::move(r).value();
    mirror = std::make_unique<Mirror>(*be);
  }
  void TearDown() override {
    if (!be) return;
    const Status st = be->check();
    EXPECT_TRUE(st.ok()) << st.message();
    mirror.reset();
  }
  Tensor dev(const Buf& b) { return mirror->f32(b.v, b.rows, b.cols); }
  template <class T>
  const T* dev(const std::vector<T>& v) {
    return mirror->array(v);
  }
  Tensor weight(const Tensor& host_view) { return mirror->weight(host_view); }
  std::vector<float> host(const Tensor& t) { return mirror->host(t); }

  std::unique_ptr<Backend> be, ref;
  std::unique_ptr<Mirror> mirror;
  std::mt19937 rng{1234};
};

void expect_close(const std::vector<float>& a, const std::vector<float>& b, float rel,
                  const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  const float bound = rel * std::max(1.0f, max_abs(b.data(), b.size()));
  EXPECT_LE(max_abs_diff(a.data(), b.data(), a.size()), bound) << what;
}

TEST_P(OpContract, RmsNormAndFusedAdd) {
  for (int64_t n : {1, 7, 64, 100, 4096 + 3}) {
    for (int64_t rows : {1, 3, 17}) {
      Buf x(rows, n, rng), y(rows, n, rng), w(1, n, rng), o2(rows, n, rng);
      Tensor dx = dev(x), dy = dev(y), dw = dev(w), d1 = dev(o2);
      be->rms_norm(dx, dw, 1e-6f, d1);
      ref->rms_norm(x.t(), w.t(), 1e-6f, o2.t());
      expect_close(host(d1), o2.v, 1e-5f, "rms_norm n=" + std::to_string(n));
      Tensor in_place = dev(x);
      be->rms_norm(in_place, dw, 1e-6f, in_place);
      expect_close(host(in_place), o2.v, 1e-5f, "rms_norm in place n=" + std::to_string(n));
      be->add_rms_norm(dx, dy, dw, 1e-5f, d1);
      ref->add_rms_norm(x.t(), y.t(), w.t(), 1e-5f, o2.t());
      expect_close(host(dx), x.v, 1e-6f, "add_rms_norm residual");
      expect_close(host(d1), o2.v, 1e-5f, "add_rms_norm n=" + std::to_string(n));
    }
  }
}

TEST_P(OpContract, LayerNormGeluSiluScale) {
  for (int64_t n : {1, 33, 384}) {
    Buf x(5, n, rng), w(1, n, rng), b(1, n, rng), o2(5, n, rng), u(5, n, rng);
    Tensor dx = dev(x), dw = dev(w), db = dev(b), du = dev(u), d1 = dev(o2);
    be->layer_norm(dx, dw, db, 1e-12f, d1);
    ref->layer_norm(x.t(), w.t(), b.t(), 1e-12f, o2.t());
    expect_close(host(d1), o2.v, 1e-5f, "layer_norm");
    be->silu_mul(dx, du, d1);
    ref->silu_mul(x.t(), u.t(), o2.t());
    expect_close(host(d1), o2.v, 1e-5f, "silu_mul");
    be->gelu_tanh_mul(dx, du, d1);
    ref->gelu_tanh_mul(x.t(), u.t(), o2.t());
    expect_close(host(d1), o2.v, 1e-5f, "gelu_tanh_mul");
    Buf c = x;
    be->gelu_erf(dx);
    ref->gelu_erf(c.t());
    expect_close(host(dx), c.v, 1e-5f, "gelu_erf");
    be->scale(dx, 0.37f);
    ref->scale(c.t(), 0.37f);
    expect_close(host(dx), c.v, 1e-6f, "scale");
    be->softcap(dx, 1.5f);
    ref->softcap(c.t(), 1.5f);
    expect_close(host(dx), c.v, 1e-6f, "softcap");
    be->add_bias(dx, db);
    ref->add_bias(c.t(), b.t());
    expect_close(host(dx), c.v, 1e-6f, "add_bias");
    be->add(dx, du);
    ref->add(c.t(), u.t());
    expect_close(host(dx), c.v, 1e-6f, "add");
  }
}

TEST_P(OpContract, EmbedGatherMatmulFloatTypes) {
  for (DType type : {DType::F32, DType::F16, DType::BF16}) {
    for (int64_t k : {32, 64, 96, 4096}) {
      for (int64_t rows : {1, 7, 33, 259}) {
        for (int64_t tokens : {1, 2, 5, 17}) {
          Buf wf(rows, k, rng), x(tokens, k, rng), o2(tokens, rows, rng);
          std::vector<uint16_t> w16(wf.v.size());
          for (size_t i = 0; i < w16.size(); ++i)
            w16[i] = type == DType::F16 ? fp32_to_fp16(wf.v[i]) : fp32_to_bf16(wf.v[i]);
          void* data = type == DType::F32 ? static_cast<void*>(wf.v.data()) : static_cast<void*>(w16.data());
          Tensor w = Tensor::matrix_view(type, data, rows, k);
          Tensor d1 = dev(o2);
          be->matmul(dev(x), weight(w), d1);
          ref->matmul(x.t(), w, o2.t());
          expect_close(host(d1), o2.v, 2e-5f * std::sqrt(float(k)),
                       std::string(dtype_name(type)) + " k=" + std::to_string(k) +
                           " rows=" + std::to_string(rows) + " tokens=" + std::to_string(tokens));
        }
      }
      std::vector<int32_t> ids = {0, 3, 1, 0};
      if (k != 64) continue;
      Buf table(4, k, rng), e2(4, k, rng);
      Tensor e1 = dev(e2);
      be->embed(weight(Tensor::f32(table.v.data(), 4, k)), dev(ids), e1);
      ref->embed(Tensor::f32(table.v.data(), 4, k), ids.data(), e2.t());
      EXPECT_EQ(host(e1), e2.v);
      std::vector<int32_t> rows = {3, 0};
      Buf g2(2, k, rng);
      Tensor g1 = dev(g2);
      be->gather_rows(e1, dev(rows), g1);
      ref->gather_rows(e2.t(), rows.data(), g2.t());
      EXPECT_EQ(host(g1), g2.v);
    }
  }
}

// Greedy choice: the lowest column among equal maxima (ties placed after and before it), -0 tying +0,
// and -1 for rows whose maximum is not finite (a NaN, a +inf, only -inf); vocabulary-sized rows.
TEST_P(OpContract, ArgmaxRowsTakesTheLowestOfEqualMaxima) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (int64_t cols : {1, 7, 1000, 128256}) {
    for (int64_t rows : {1, 6, 64}) {
      Buf x(rows, cols, rng);
      std::vector<int32_t> expect(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) {
        float* v = x.v.data() + r * cols;
        const int64_t at = (r * 7919 + 13) % cols;
        int32_t e = static_cast<int32_t>(at);
        switch (r % 6) {
          case 0:  // a tie after the maximum
            v[at] = 50.0f;
            if (at + 1 < cols) v[cols - 1] = 50.0f;
            break;
          case 1:  // one NaN
            v[at] = nan;
            e = -1;
            break;
          case 2:  // -inf everywhere but a +0 and a later -0
            std::fill(v, v + cols, -inf);
            v[at] = 0.0f;
            if (at + 1 < cols) v[at + 1] = -0.0f;
            break;
          case 3:  // a tie two columns on, a near miss before
            v[at] = 9.0f;
            if (at + 2 < cols) v[at + 2] = 9.0f;
            if (at > 0) v[at / 2] = 8.999f;
            break;
          case 4:  // one +inf
            v[at] = inf;
            e = -1;
            break;
          default:  // only -inf
            std::fill(v, v + cols, -inf);
            e = -1;
        }
        expect[size_t(r)] = e;
      }
      std::vector<int32_t> got_ref(static_cast<size_t>(rows)), got(static_cast<size_t>(rows), -2);
      ref->argmax_rows(x.t(), got_ref.data());
      EXPECT_EQ(got_ref, expect) << "reference cols=" << cols << " rows=" << rows;
      int32_t* out = const_cast<int32_t*>(dev(got));
      be->argmax_rows(dev(x), out);
      be->copy_to_host(got.data(), out, got.size() * sizeof(int32_t));
      EXPECT_EQ(got, expect) << "cols=" << cols << " rows=" << rows;
    }
  }
}

// A group of matmuls sharing their input gives each product exactly as its own matmul does, for any
// mix of weight types (more products than the CUDA backend fuses, types it does not fuse) and for
// steps on either side of the CUDA backend's small-step bounds (8 and 64 tokens).
TEST_P(OpContract, MatmulGroupEqualsSeparateMatmuls) {
  const int64_t k = 2304;
  const std::pair<DType, int64_t> specs[] = {
      {DType::Q4_K, 40}, {DType::Q6_K, 24}, {DType::Q4_K, 17}, {DType::Q8_0, 9}, {DType::Q4_K, 5}};
  std::vector<std::vector<uint8_t>> stored;
  std::vector<Tensor> ws;
  std::normal_distribution<float> d(0.0f, 0.5f);
  for (const auto& [type, rows] : specs) {
    std::vector<float> f(static_cast<size_t>(rows * k));
    for (float& v : f) v = d(rng);
    const size_t rb = row_bytes(type, k);
    stored.emplace_back(rb * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r)
      quant::quantize_row(type, f.data() + r * k, stored.back().data() + static_cast<size_t>(r) * rb, k);
    ws.push_back(weight(Tensor::matrix_view(type, stored.back().data(), rows, k)));
  }
  // All five (activation formats differ), and the K-quants alone (one activation format: the CPU
  // backend converts x once and runs them in one pass).
  const std::vector<std::vector<size_t>> groups = {{0, 1, 2, 3, 4}, {0, 1, 2, 4}};
  for (const auto& members : groups) {
    for (int64_t tokens : {1, 3, 8, 9, 64, 65}) {
      Buf x(tokens, k, rng);
      const Tensor dx = dev(x);
      std::vector<MatmulOut> group;
      std::vector<Tensor> alone;
      for (size_t i : members) {
        Buf o(tokens, ws[i].rows(), rng);
        group.push_back({&ws[i], dev(o)});
        alone.push_back(dev(o));
        be->matmul(dx, ws[i], alone.back());
      }
      be->matmul_group(dx, group);
      for (size_t j = 0; j < members.size(); ++j)
        EXPECT_EQ(host(group[j].out), host(alone[j]))
            << dtype_name(ws[members[j]].type) << " product " << members[j] << ", " << tokens << " tokens";
    }
  }
}

TEST_P(OpContract, Rope) {
  for (RopeStyle style : {RopeStyle::Neox, RopeStyle::Adjacent}) {
    for (int64_t hd : {8, 48, 64, 128}) {
      const int64_t heads = 3, rope_dim = hd == 48 ? 32 : hd;  // one partial-rotary case
      std::vector<float> inv(static_cast<size_t>(rope_dim / 2));
      for (size_t i = 0; i < inv.size(); ++i) inv[i] = std::pow(10000.0f, -2.0f * float(i) / float(rope_dim));
      std::vector<int32_t> pos = {0, 1, 7, 511, 4000};
      Buf x(5, heads * hd, rng);
      Tensor dx = dev(x);
      be->rope(dx, heads, RopeParams{hd, rope_dim, style, dev(inv)}, dev(pos));
      ref->rope(x.t(), heads, RopeParams{hd, rope_dim, style, inv.data()}, pos.data());
      expect_close(host(dx), x.v, 1e-5f, "rope hd=" + std::to_string(hd));
    }
  }
}

// rope_and_cache gives what per-head rms_norm, rope and kv_write give run one by one (the reference
// backend runs them so): GQA heads, both rotation styles, partial rotary, with and without QK-norm,
// cache slots out of order.
TEST_P(OpContract, RopeAndCacheEqualsSeparateOps) {
  for (RopeStyle style : {RopeStyle::Neox, RopeStyle::Adjacent}) {
    for (bool qk_norm : {false, true}) {
      for (int64_t hd : {48, 128}) {
        const int64_t heads = 6, kv_heads = 2, rope_dim = hd == 48 ? 32 : hd, n = 3, cache_rows = 9;
        std::vector<float> inv(static_cast<size_t>(rope_dim / 2));
        for (size_t i = 0; i < inv.size(); ++i)
          inv[i] = std::pow(10000.0f, -2.0f * float(i) / float(rope_dim));
        std::vector<int32_t> pos = {0, 17, 4000}, slots = {4, 0, 7};
        Buf q(n, heads * hd, rng), k(n, kv_heads * hd, rng), v(n, kv_heads * hd, rng);
        Buf kc(cache_rows, kv_heads * hd, rng), vc(cache_rows, kv_heads * hd, rng);
        Buf qn(1, hd, rng), kn(1, hd, rng);
        const Tensor dq = dev(q), dk = dev(k), dkc = dev(kc), dvc = dev(vc);
        const RopeAndCache d{.q = dq,
                             .k = dk,
                             .v = dev(v),
                             .n_heads = heads,
                             .n_kv_heads = kv_heads,
                             .q_norm = qk_norm ? dev(qn) : Tensor{},
                             .k_norm = qk_norm ? dev(kn) : Tensor{},
                             .eps = 1e-6f,
                             .rope = RopeParams{hd, rope_dim, style, dev(inv)},
                             .positions = dev(pos),
                             .k_cache = dkc,
                             .v_cache = dvc,
                             .slots = dev(slots)};
        const RopeAndCache h{.q = q.t(),
                             .k = k.t(),
                             .v = v.t(),
                             .n_heads = heads,
                             .n_kv_heads = kv_heads,
                             .q_norm = qk_norm ? qn.t() : Tensor{},
                             .k_norm = qk_norm ? kn.t() : Tensor{},
                             .eps = 1e-6f,
                             .rope = RopeParams{hd, rope_dim, style, inv.data()},
                             .positions = pos.data(),
                             .k_cache = kc.t(),
                             .v_cache = vc.t(),
                             .slots = slots.data()};
        be->rope_and_cache(d);
        ref->rope_and_cache(h);
        const std::string what = std::string(style == RopeStyle::Neox ? "neox" : "adjacent") +
                                 (qk_norm ? " qk-norm" : "") + " hd=" + std::to_string(hd);
        expect_close(host(dq), q.v, 1e-5f, "q " + what);
        expect_close(host(dk), k.v, 1e-5f, "k " + what);
        expect_close(host(dkc), kc.v, 1e-5f, "k cache " + what);
        EXPECT_EQ(host(dvc), vc.v) << "v cache " << what;
      }
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
      AttentionLayout dL{3, dev(positions), dev(kv_end), dev(seq_index), dev(tables), 4, bs};
      AttentionParams p{s.heads, s.kv_heads, s.hd, 1.0f / std::sqrt(float(s.hd)), window};
      Buf q(3, s.heads * s.hd, rng), o2(3, s.heads * s.hd, rng);
      Tensor dkc = dev(kc), dvc = dev(vc), d1 = dev(o2);
      be->attention(dev(q), dkc, dvc, dL, p, d1);
      ref->attention(q.t(), kc.t(), vc.t(), L, p, o2.t());
      expect_close(host(d1), o2.v, 1e-5f,
                   "attention heads=" + std::to_string(s.heads) + "/" + std::to_string(s.kv_heads) +
                       " hd=" + std::to_string(s.hd) + " window=" + std::to_string(window));
      // kv_write lands rows at the requested slots only.
      Buf k(2, kvd, rng), v(2, kvd, rng);
      std::vector<int32_t> slots = {5, 170};
      be->kv_write(dkc, dvc, dev(k), dev(v), dev(slots));
      ref->kv_write(kc.t(), vc.t(), k.t(), v.t(), slots.data());
      EXPECT_EQ(host(dkc), kc.v);
      EXPECT_EQ(host(dvc), vc.v);
    }
  }
}

// A prefill-shaped step: all 75 tokens of one sequence (causal, or as an encoder seeing the whole
// sequence), then 3 tokens of a second one (more than 64 tokens: the CUDA kernel's blocks then take
// several tokens, and one block takes the last of the first sequence and the second sequence's).
TEST_P(OpContract, PagedAttentionPrefill) {
  // head_dim 192 takes the CPU's generic kernel (the AVX-512 one takes up to 128 or multiples of 128).
  for (AttnShape s : {AttnShape{4, 2, 64}, AttnShape{3, 3, 48}, AttnShape{8, 8, 128}, AttnShape{2, 1, 256},
                      AttnShape{4, 2, 192}}) {
    for (bool causal : {true, false}) {
      for (int64_t window : {0, 7}) {
        const int64_t bs = 16, n_blocks = 8, max_blocks = 5, kvd = s.kv_heads * s.hd;
        Buf kc(n_blocks * bs, kvd, rng), vc(n_blocks * bs, kvd, rng);
        std::vector<int32_t> tables = {6, 1, 3, 0, 7, 4, 0, 0, 0, 0};
        std::vector<int32_t> positions, kv_end, seq_index;
        for (int32_t i = 0; i < 75; ++i) {
          positions.push_back(i);
          kv_end.push_back(causal ? i + 1 : 75);
          seq_index.push_back(0);
        }
        for (int32_t i = 5; i < 8; ++i) {
          positions.push_back(i);
          kv_end.push_back(causal ? i + 1 : 8);
          seq_index.push_back(1);
        }
        const int64_t n = static_cast<int64_t>(positions.size());
        AttentionLayout L{n, positions.data(), kv_end.data(), seq_index.data(), tables.data(), max_blocks,
                          bs};
        const int32_t *dpos = dev(positions), *dend = dev(kv_end), *dseq = dev(seq_index),
                      *dtab = dev(tables);
        AttentionParams p{s.heads, s.kv_heads, s.hd, 1.0f / std::sqrt(float(s.hd)), window};
        Buf q(n, s.heads * s.hd, rng), o2(n, s.heads * s.hd, rng);
        Tensor dq = dev(q), dkc = dev(kc), dvc = dev(vc), d1 = dev(o2);
        be->attention(dq, dkc, dvc, AttentionLayout{n, dpos, dend, dseq, dtab, max_blocks, bs}, p, d1);
        ref->attention(q.t(), kc.t(), vc.t(), L, p, o2.t());
        const std::string what = "heads=" + std::to_string(s.heads) + "/" + std::to_string(s.kv_heads) +
                                 " hd=" + std::to_string(s.hd) + (causal ? " causal" : " encoder") +
                                 " window=" + std::to_string(window);
        const std::vector<float> all = host(d1);
        expect_close(all, o2.v, 1e-5f, "prefill attention " + what);
        // A prefill row has the bits of the same token attended in a step of its own (as a decode step).
        const int64_t row = s.heads * s.hd;
        for (int64_t i : {int64_t{0}, int64_t{20}, int64_t{73}, n - 1}) {
          Tensor d_one = dev(Buf(1, row, rng));
          be->attention(Tensor::f32(dq.row<float>(i), 1, row), dkc, dvc,
                        AttentionLayout{1, dpos + i, dend + i, dseq + i, dtab, max_blocks, bs}, p, d_one);
          const std::vector<float> alone = host(d_one);
          EXPECT_EQ(0, std::memcmp(alone.data(), all.data() + i * row, size_t(row) * sizeof(float)))
              << "token " << i << " alone, " << what;
        }
      }
    }
  }
}

// A decode step of 20 (and of 70) sequences of 1 to 300 tokens (one token each, scattered blocks): every
// row as the reference computes it, and bit for bit what the same token gives in a step of its own (the
// CUDA kernel takes a token a block in steps of up to 64 tokens, several above).
TEST_P(OpContract, PagedAttentionDecodeBatchEqualsEachSequenceAlone) {
  for (AttnShape s : {AttnShape{8, 2, 128}, AttnShape{16, 2, 64}, AttnShape{32, 8, 128}, AttnShape{4, 1, 256},
                      AttnShape{6, 1, 64}, AttnShape{4, 4, 32}}) {
    for (auto [n, window] : {std::pair<int64_t, int64_t>{20, 0}, {20, 37}, {70, 0}}) {
      const int64_t bs = 16, max_blocks = 19, kvd = s.kv_heads * s.hd;
      std::vector<int32_t> positions, kv_end, seq_index, tables(size_t(n * max_blocks), 0);
      int32_t next_block = 0;
      for (int32_t i = 0; i < n; ++i) {
        const int32_t len = 1 + (i * 97 + 40) % 300;
        positions.push_back(len - 1);
        kv_end.push_back(len);
        seq_index.push_back(i);
        for (int32_t b = 0; b < (len + bs - 1) / bs; ++b) tables[size_t(i * max_blocks + b)] = next_block++;
      }
      // Scatter the blocks: a fixed permutation of their ids.
      std::vector<int32_t> perm(static_cast<size_t>(next_block));
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int32_t& b : tables) b = perm[size_t(b)];
      Buf kc(next_block * bs, kvd, rng), vc(next_block * bs, kvd, rng), q(n, s.heads * s.hd, rng);
      Buf o2(n, s.heads * s.hd, rng);
      AttentionParams p{s.heads, s.kv_heads, s.hd, 1.0f / std::sqrt(float(s.hd)), window};
      Tensor dkc = dev(kc), dvc = dev(vc), dq = dev(q), d1 = dev(o2);
      const int32_t *dpos = dev(positions), *dend = dev(kv_end), *dseq = dev(seq_index), *dtab = dev(tables);
      be->attention(dq, dkc, dvc, AttentionLayout{n, dpos, dend, dseq, dtab, max_blocks, bs}, p, d1);
      ref->attention(q.t(), kc.t(), vc.t(),
                     AttentionLayout{n, positions.data(), kv_end.data(), seq_index.data(), tables.data(),
                                     max_blocks, bs},
                     p, o2.t());
      const std::string what = std::to_string(n) + " sequences, heads=" + std::to_string(s.heads) + "/" +
                               std::to_string(s.kv_heads) + " hd=" + std::to_string(s.hd) +
                               " window=" + std::to_string(window);
      const std::vector<float> batched = host(d1);
      expect_close(batched, o2.v, 1e-5f, "decode attention " + what);
      const int64_t row = s.heads * s.hd;
      for (int64_t i : {int64_t{0}, int64_t{7}, n / 2 + 1, n - 1}) {
        Buf one(1, row, rng);
        Tensor d_one = dev(one);
        const Tensor qi = Tensor::f32(dq.row<float>(i), 1, row);
        be->attention(qi, dkc, dvc, AttentionLayout{1, dpos + i, dend + i, dseq + i, dtab, max_blocks, bs}, p,
                      d_one);
        const std::vector<float> alone = host(d_one);
        EXPECT_EQ(0, std::memcmp(alone.data(), batched.data() + i * row, size_t(row) * sizeof(float)))
            << "sequence " << i << " alone, " << what;
      }
    }
  }
}

// Sequences of up to 2000 keys, across the CUDA kernel's 512-key chunks (kAttnChunkKeys): a decode step of
// 20 sequences and a prefill step of a long sequence's last 70 tokens, each row as the reference computes
// it and bit for bit what the same token gives alone (a step of one token spreads its chunks over several
// blocks on CUDA; the 20-sequence step of 8 kv heads and the prefill step take them in one block).
TEST_P(OpContract, PagedAttentionOverLongSequences) {
  const int32_t kLong[] = {513, 1024, 1537, 2000};
  for (AttnShape s : {AttnShape{16, 8, 128}, AttnShape{8, 2, 64}, AttnShape{4, 1, 256}}) {
    for (int64_t window : {int64_t{0}, int64_t{600}}) {
      const int64_t bs = 16, max_blocks = 128, kvd = s.kv_heads * s.hd;
      // Decode rows: sequences 0-19 at their last position. Prefill rows: sequence 20's positions
      // 1230-1299.
      std::vector<int32_t> positions, kv_end, seq_index, tables(size_t(21 * max_blocks), 0);
      int32_t next_block = 0;
      for (int32_t i = 0; i < 21; ++i) {
        const int32_t len = i == 20 ? 1300 : i % 5 == 0 ? kLong[i / 5] : 1 + (i * 97 + 40) % 300;
        for (int32_t b = 0; b < (len + bs - 1) / bs; ++b) tables[size_t(i * max_blocks + b)] = next_block++;
        for (int32_t p = i == 20 ? len - 70 : len - 1; p < len; ++p) {
          positions.push_back(p);
          kv_end.push_back(p + 1);
          seq_index.push_back(i);
        }
      }
      std::vector<int32_t> perm(static_cast<size_t>(next_block));
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int32_t& b : tables) b = perm[size_t(b)];
      const int64_t n = static_cast<int64_t>(positions.size());
      Buf kc(next_block * bs, kvd, rng), vc(next_block * bs, kvd, rng), q(n, s.heads * s.hd, rng);
      Buf o2(n, s.heads * s.hd, rng);
      AttentionParams p{s.heads, s.kv_heads, s.hd, 1.0f / std::sqrt(float(s.hd)), window};
      ref->attention(q.t(), kc.t(), vc.t(),
                     AttentionLayout{n, positions.data(), kv_end.data(), seq_index.data(), tables.data(),
                                     max_blocks, bs},
                     p, o2.t());
      Tensor dkc = dev(kc), dvc = dev(vc), dq = dev(q);
      const int32_t *dpos = dev(positions), *dend = dev(kv_end), *dseq = dev(seq_index), *dtab = dev(tables);
      const int64_t row = s.heads * s.hd;
      const std::string what = "heads=" + std::to_string(s.heads) + "/" + std::to_string(s.kv_heads) +
                               " hd=" + std::to_string(s.hd) + " window=" + std::to_string(window);
      // The decode step (rows 0-19), then the prefill step (rows 20-89).
      std::vector<float> steps;
      for (auto [first, count] : {std::pair<int64_t, int64_t>{0, 20}, {20, 70}}) {
        Tensor d1 = dev(Buf(count, row, rng));
        be->attention(Tensor::f32(dq.row<float>(first), count, row), dkc, dvc,
                      AttentionLayout{count, dpos + first, dend + first, dseq + first, dtab, max_blocks, bs},
                      p, d1);
        const std::vector<float> part = host(d1);
        steps.insert(steps.end(), part.begin(), part.end());
      }
      expect_close(steps, o2.v, 1e-5f, "long-sequence attention " + what);
      for (int64_t i :
           {int64_t{0}, int64_t{5}, int64_t{9}, int64_t{15}, int64_t{19}, int64_t{20}, int64_t{52}, n - 1}) {
        Tensor d_one = dev(Buf(1, row, rng));
        be->attention(Tensor::f32(dq.row<float>(i), 1, row), dkc, dvc,
                      AttentionLayout{1, dpos + i, dend + i, dseq + i, dtab, max_blocks, bs}, p, d_one);
        const std::vector<float> alone = host(d_one);
        EXPECT_EQ(0, std::memcmp(alone.data(), steps.data() + i * row, size_t(row) * sizeof(float)))
            << "row " << i << " (position " << positions[size_t(i)] << ") alone, " << what;
      }
    }
  }
}

// Mixture-of-experts ops.
// n_experts matrices [rows, cols] of `type`, stored as one stack in reverse expert order (so an op
// that ignored the pointer table and assumed a stack would read the wrong expert).
struct HostExperts {
  std::vector<uint8_t> bytes;
  std::vector<const void*> table;
  ExpertMatrices m;
  HostExperts(DType type, int64_t n_experts, int64_t rows, int64_t cols, std::mt19937& rng) {
    const size_t rb = row_bytes(type, cols);
    bytes.resize(rb * size_t(rows * n_experts));
    std::normal_distribution<float> d(0.0f, 0.5f);
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows * n_experts; ++r) {
      for (float& v : row) v = d(rng);
      quant::quantize_row(type, row.data(), bytes.data() + size_t(r) * rb, cols);
    }
    for (int64_t e = 0; e < n_experts; ++e)
      table.push_back(bytes.data() + size_t((n_experts - 1 - e) * rows) * rb);
    m = {type, n_experts, rows, cols, rb, table.data()};
  }
};

// Activations that Q8_0 and Q8_K rounding keep exactly (multiples of 1/128 up to 127/128, every
// 32-block holding a value of magnitude 127/128), so the quantized kernels and the float reference
// see the same numbers and differ only in summation order.
std::vector<float> exact_activations(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::uniform_int_distribution<int> q(-127, 127);
  std::vector<float> v(size_t(rows * cols));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = float(i % 32 == 0 ? (q(rng) < 0 ? -127 : 127) : q(rng)) / 128.0f;
  return v;
}

struct MoeCase {
  int64_t tokens, experts, k, hidden, inter;
  DType gate, up, down;
};

class MoeContract : public OpContract {
 protected:
  void read_routing(const MoeRouting& d, HostRouting& h) {
    be->copy_to_host(h.ids.data(), d.ids, h.ids.size() * sizeof(int32_t));
    be->copy_to_host(h.weights.data(), d.weights, h.weights.size() * sizeof(float));
    be->copy_to_host(h.offsets.data(), d.offsets, h.offsets.size() * sizeof(int32_t));
    be->copy_to_host(h.order.data(), d.order, h.order.size() * sizeof(int32_t));
    be->copy_to_host(h.rank.data(), d.rank, h.rank.size() * sizeof(int32_t));
  }
  // Routes `logits` on the reference (into `want`) and on the backend under test (into `got`, its device
  // routing in `dr`); the backend's ids, offsets, order and rank must be the reference's.
  void route_both(Buf& logits, bool normalize, HostRouting& want, HostRouting& got, MoeRouting& dr) {
    ref->moe_route(logits.t(), normalize, want.r);
    dr = mirror->routing(got);
    be->moe_route(dev(logits), normalize, dr);
    read_routing(dr, got);
    ASSERT_EQ(got.ids, want.ids);
    EXPECT_EQ(got.offsets, want.offsets);
    EXPECT_EQ(got.order, want.order);
    EXPECT_EQ(got.rank, want.rank);
  }
  ExpertMatrices dev_experts(const HostExperts& h) {
    const int64_t n = h.m.n_experts;
    Tensor w =
        weight(Tensor::matrix_view(h.m.type, const_cast<uint8_t*>(h.bytes.data()), h.m.rows, h.m.cols, n));
    std::vector<const void*> table;
    for (int64_t e = 0; e < n; ++e) table.push_back(w.matrix(n - 1 - e).data);
    ExpertMatrices d = h.m;
    d.mats = dev(table);
    return d;
  }
};

// Router logits with expert 0 chosen by every token, the last expert by none (when k < n_experts),
// and a three-way tie in row 1 that must resolve to the lower ids.
Buf router_logits(int64_t n, int64_t n_experts, std::mt19937& rng) {
  Buf l(n, n_experts, rng);
  for (int64_t t = 0; t < n; ++t) {
    l.v[size_t(t * n_experts)] = 10.0f;
    l.v[size_t(t * n_experts + n_experts - 1)] = -10.0f;
  }
  if (n > 1 && n_experts > 5)
    for (int64_t e = 2; e < 5; ++e) l.v[size_t(n_experts + e)] = 5.0f;
  return l;
}

TEST_P(MoeContract, RouteGateUpDownCombineAndBatchInvariance) {
  const std::vector<MoeCase> cases = {
      {1, 8, 2, 64, 32, DType::F32, DType::F32, DType::F32},  // one token
      {7, 5, 3, 96, 48, DType::F16, DType::F16, DType::F16},  // odd sizes
      {13, 16, 4, 256, 256, DType::Q4_K, DType::Q8_0,
       DType::Q6_K},                                              // gate/up with different activation formats
      {33, 6, 6, 64, 80, DType::BF16, DType::BF16, DType::BF16},  // every expert receives every token
      {9, 128, 8, 256, 32, DType::Q4_K, DType::Q4_K, DType::Q8_0},  // Qwen3-MoE's routing width
  };
  for (const MoeCase& c : cases) {
    HostExperts gate(c.gate, c.experts, c.inter, c.hidden, rng), up(c.up, c.experts, c.inter, c.hidden, rng);
    HostExperts down(c.down, c.experts, c.hidden, c.inter, rng);
    const ExpertMatrices dgate = dev_experts(gate), dup = dev_experts(up), ddown = dev_experts(down);
    for (bool normalize : {true, false}) {
      const std::string what = std::string(dtype_name(c.gate)) + "/" + dtype_name(c.up) + "/" +
                               dtype_name(c.down) + " tokens=" + std::to_string(c.tokens) +
                               " experts=" + std::to_string(c.experts) + " k=" + std::to_string(c.k) +
                               (normalize ? " normalized" : "");
      SCOPED_TRACE(what);
      const int64_t n = c.tokens, k = c.k, pairs = n * k;
      Buf logits = router_logits(n, c.experts, rng);
      HostRouting want(n, c.experts, k), got(n, c.experts, k);
      MoeRouting dr;
      ASSERT_NO_FATAL_FAILURE(route_both(logits, normalize, want, got, dr));
      expect_close(got.weights, want.weights, 1e-6f, "routing weights");
      EXPECT_EQ(want.offsets[1] - want.offsets[0], n) << "expert 0 receives every token";
      if (k < c.experts) {
        EXPECT_EQ(want.offsets[size_t(c.experts)], want.offsets[size_t(c.experts - 1)])
            << "last expert unused";
      }
      if (n > 1 && c.experts > 5 && k >= 3) {
        EXPECT_EQ(std::vector<int32_t>(want.ids.begin() + k, want.ids.begin() + k + 3),
                  (std::vector<int32_t>{0, 2, 3}))
            << "ties go to the lower id";
      }

      Buf x(n, c.hidden, rng), xd(pairs, c.inter, rng), y(pairs, c.hidden, rng);
      x.v = exact_activations(n, c.hidden, rng);
      xd.v = exact_activations(pairs, c.inter, rng);
      Buf act(pairs, c.inter, rng), dn(pairs, c.hidden, rng), comb(n, c.hidden, rng);
      ref->expert_gate_up_silu(x.t(), gate.m, up.m, want.r, act.t());
      ref->expert_matmul(xd.t(), down.m, want.r, dn.t());
      ref->moe_combine(y.t(), want.r, comb.t());
      Tensor dact = dev(act), ddn = dev(dn), dcomb = dev(comb);
      be->expert_gate_up_silu(dev(x), dgate, dup, dr, dact);
      be->expert_matmul(dev(xd), ddown, dr, ddn);
      be->moe_combine(dev(y), dr, dcomb);
      const std::vector<float> hact = host(dact), hdn = host(ddn), hcomb = host(dcomb);
      expect_close(hact, act.v, 2e-5f * std::sqrt(float(c.hidden)), "expert_gate_up_silu");
      expect_close(hdn, dn.v, 2e-5f * std::sqrt(float(c.inter)), "expert_matmul");
      expect_close(hcomb, comb.v, 1e-5f, "moe_combine");

      // The same token routed alone gets bit-identical rows from the backend under test.
      for (int64_t t : {int64_t{0}, n / 2, n - 1}) {
        SCOPED_TRACE("token " + std::to_string(t) + " alone");
        Buf l1(1, c.experts, rng), x1(1, c.hidden, rng), xd1(k, c.inter, rng), y1(k, c.hidden, rng);
        std::copy_n(logits.v.begin() + t * c.experts, c.experts, l1.v.begin());
        std::copy_n(x.v.begin() + t * c.hidden, c.hidden, x1.v.begin());
        HostRouting one(1, c.experts, k);
        MoeRouting d1 = mirror->routing(one);
        be->moe_route(dev(l1), normalize, d1);
        read_routing(d1, one);
        for (int64_t j = 0; j < k; ++j) {
          const size_t from = size_t(got.rank[size_t(t * k + j)]), to = size_t(one.rank[size_t(j)]);
          std::copy_n(xd.v.begin() + from * c.inter, c.inter, xd1.v.begin() + to * c.inter);
          std::copy_n(y.v.begin() + from * c.hidden, c.hidden, y1.v.begin() + to * c.hidden);
        }
        Buf a1(k, c.inter, rng), dn1(k, c.hidden, rng), comb1(1, c.hidden, rng);
        Tensor da1 = dev(a1), ddn1 = dev(dn1), dcomb1 = dev(comb1);
        be->expert_gate_up_silu(dev(x1), dgate, dup, d1, da1);
        be->expert_matmul(dev(xd1), ddown, d1, ddn1);
        be->moe_combine(dev(y1), d1, dcomb1);
        const std::vector<float> ha1 = host(da1), hdn1 = host(ddn1), hc1 = host(dcomb1);
        EXPECT_EQ(one.weights,
                  std::vector<float>(got.weights.begin() + t * k, got.weights.begin() + (t + 1) * k));
        for (int64_t j = 0; j < k; ++j) {
          const int64_t from = got.rank[size_t(t * k + j)], to = one.rank[size_t(j)];
          EXPECT_TRUE(std::equal(ha1.begin() + to * c.inter, ha1.begin() + (to + 1) * c.inter,
                                 hact.begin() + from * c.inter))
              << "gate/up rows of choice " << j;
          EXPECT_TRUE(std::equal(hdn1.begin() + to * c.hidden, hdn1.begin() + (to + 1) * c.hidden,
                                 hdn.begin() + from * c.hidden))
              << "down rows of choice " << j;
        }
        EXPECT_TRUE(std::equal(hc1.begin(), hc1.end(), hcomb.begin() + t * c.hidden)) << "combined row";
      }
    }
  }
}

// A prefill-sized step: many pairs for each part of a backend's grouping (the CUDA kernel splits the
// 8 800 pairs into 32 ranges of 275, each walked 32 pairs at a time).
TEST_P(MoeContract, RouteGroupsStepsOfManyPairs) {
  const int64_t n = 1100, experts = 128, k = 8;
  Buf logits = router_logits(n, experts, rng);
  HostRouting want(n, experts, k), got(n, experts, k);
  MoeRouting dr;
  route_both(logits, true, want, got, dr);
}

#ifdef FERRUM_OPS_TEST_CUDA
INSTANTIATE_TEST_SUITE_P(Backends, OpContract, ::testing::Values("cuda"));
INSTANTIATE_TEST_SUITE_P(Backends, MoeContract, ::testing::Values("cuda"));
#else
INSTANTIATE_TEST_SUITE_P(Backends, OpContract, ::testing::Values("cpu"));
INSTANTIATE_TEST_SUITE_P(Backends, MoeContract, ::testing::Values("cpu"));
#endif

}  // namespace
}  // namespace ferrum::testing
