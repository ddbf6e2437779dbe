// What the CUDA backend promises beyond the op contract: quantized weights through every matmul
// path (GEMVs for small steps, tensor-core k-quant kernels for batched steps, f16 tiles + cuBLAS for
// large ones) against the scalar reference,
// a token's result independent of the rest of its step, the 8-bit-activation expert products, quantized
// embedding rows, and failures reported through check(). Skips without a device. (The float32-accurate
// MoE ops are in the op contract.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "backend/backend.h"
#include "backend/cuda/cublas.h"
#include "device_util.h"
#include "mirror.h"
#include "quant/matmul.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace ferrum::testing {
namespace {

// The backend's step-size bounds (backend/cuda/kernels.h).
constexpr int64_t kGemvMaxTokens = 8;
constexpr int64_t kKquantMaxTokens = 64;  // Q4_K, Q6_K, Q8_0

const DType kQuantTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0,
                             DType::Q4_K, DType::Q5_K, DType::Q6_K};
const DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                           DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// cuBLAS is opened when a CUDA backend is made (backend/cuda/cublas.h), not by the loader at start-up;
// opening it needs no GPU. (tests/cli/run_test.py checks that a CPU run does not map it.)
TEST(CudaLibraries, CublasOpensAtRunTime) {
  auto api = cuda::cublas();
  ASSERT_TRUE(api.ok()) << api.status().message();
  EXPECT_NE(api.value()->create, nullptr);
  EXPECT_NE(api.value()->destroy, nullptr);
  EXPECT_NE(api.value()->set_stream, nullptr);
  EXPECT_NE(api.value()->gemm_ex, nullptr);
  EXPECT_EQ(cuda::cublas().value(), api.value()) << "opened once";
}

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRUM_SKIP_WITHOUT_DEVICE("cuda");
    auto b = create_backend("cuda", 0);
    ASSERT_TRUE(b.ok()) << b.status().message();
    be = std::move(b).value();
    ref = std::move(create_backend("reference", 1)).value();
    mirror = std::make_unique<Mirror>(*be);
  }
  void TearDown() override {
    if (!be) return;
    const Status st = be->check();
    EXPECT_TRUE(st.ok()) << st.message();
    mirror.reset();
  }
  std::vector<float> normal(int64_t n, float sd = 1.0f) {
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = d(rng);
    return v;
  }
  // A [rows, k] matrix of random weights stored as `type`.
  std::vector<uint8_t> stored(DType type, int64_t rows, int64_t k) {
    const std::vector<float> f = normal(rows * k, 0.5f);
    std::vector<uint8_t> out(row_bytes(type, k) * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r)
      quant::quantize_row(type, f.data() + r * k, out.data() + static_cast<size_t>(r) * row_bytes(type, k),
                          k);
    return out;
  }
  // The float32 weights that `stored` rows decode to.
  static std::vector<float> decoded(DType type, const std::vector<uint8_t>& wq, int64_t rows, int64_t k) {
    std::vector<float> wf(static_cast<size_t>(rows * k));
    for (int64_t r = 0; r < rows; ++r)
      quant::dequantize_row(type, wq.data() + static_cast<size_t>(r) * row_bytes(type, k), wf.data() + r * k,
                            k);
    return wf;
  }
  // x [tokens, k] times dw on backend b (mirrored by m), read back; b must report no failure.
  static std::vector<float> product(Backend& b, Mirror& m, const std::vector<float>& x, int64_t tokens,
                                    int64_t k, const Tensor& dw) {
    const int64_t rows = dw.rows();
    const Tensor out = m.f32(std::vector<float>(static_cast<size_t>(tokens * rows)), tokens, rows);
    b.matmul(m.f32(x, tokens, k), dw, out);
    std::vector<float> got = m.host(out);
    const Status st = b.check();
    EXPECT_TRUE(st.ok()) << st.message();
    return got;
  }

  std::unique_ptr<Backend> be, ref;
  std::unique_ptr<Mirror> mirror;
  std::mt19937 rng{99};
};

// x rounded per 256 columns as the 8-bit-activation GEMVs round it: int8 codes
// q = round_half_even(x * (127 / max |x|)) times the scale max |x| / 127 (llama.cpp's Q8_K blocks).
std::vector<double> rounded_per_256(const std::vector<float>& x) {
  std::vector<double> xq(x.size());
  for (size_t b = 0; b < x.size(); b += 256) {
    float amax = 0.0f;
    for (size_t i = b; i < b + 256; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f, d = amax / 127.0f;
    for (size_t i = b; i < b + 256; ++i) xq[i] = std::nearbyint(double(x[i]) * id) * d;
  }
  return xq;
}

float max_rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  return max_abs_diff(got.data(), want.data(), got.size()) /
         std::max(1.0f, max_abs(want.data(), want.size()));
}

TEST_F(CudaBackendTest, QuantizedMatmulBothPathsMatchReference) {
  for (DType type : kQuantTypes) {
    // 4352: Q6_K rows of more super-blocks (17) than the Q6_K GEMV has slots a row (16).
    for (int64_t k : {256, 2304, 4352}) {
      if (k == 4352 && type != DType::Q6_K) continue;
      for (int64_t rows : {5, 300}) {
        std::vector<uint8_t> wq = stored(type, rows, k);
        const Tensor w = Tensor::matrix_view(type, wq.data(), rows, k);
        const Tensor dw = mirror->weight(w);
        for (int64_t tokens : {1, 3, 8, 9, 33, 64, 65}) {
          // Activation scales far from 1 check the GEMVs' exact-code tricks (subnormal codes, scaled
          // activations) as well as the f16 hi + lo splits.
          const float sd = tokens == 1 ? 1e-3f : tokens == 3 ? 1e3f : 1.0f;
          const std::vector<float> x = normal(tokens * k, sd);
          std::vector<float> want(static_cast<size_t>(tokens * rows));
          ref->matmul(Tensor::f32(const_cast<float*>(x.data()), tokens, k), w,
                      Tensor::f32(want.data(), tokens, rows));
          const Tensor out = mirror->f32(want, tokens, rows);
          be->matmul(mirror->f32(x, tokens, k), dw, out);
          // Both paths keep float32 precision: the GEMVs multiply exact weights in fp32 (or, for
          // Q4_K, exact f16 codes times f16 hi + lo activations on tensor cores), the cuBLAS path
          // splits decoded weights and activations into f16 hi + lo halves.
          EXPECT_LE(max_rel_err(mirror->host(out), want), 2e-5f * std::sqrt(float(k)))
              << dtype_name(type) << " k=" << k << " rows=" << rows << " tokens=" << tokens;
        }
      }
    }
  }
}

// The default large-step path for quantized weights (BackendOptions::exact_gemm = false): weights
// decoded and rounded to f16, activations rounded to f16, one f16 product with fp32 accumulation. Each
// output may differ from the exact product by what those roundings allow: per term |w x| (2 u + u^2)
// with u = 2^-11 (plus 2^-25 |w| for activations in the subnormal range), and both sides' fp32
// accumulation, k 2^-24 sum |w x| each.
TEST_F(CudaBackendTest, SingleProductGemmIsWithinF16Rounding) {
  auto fast_be = create_backend("cuda", BackendOptions{.threads = 0, .exact_gemm = false});
  ASSERT_TRUE(fast_be.ok()) << fast_be.status().message();
  Mirror fast(*fast_be.value());
  std::vector<DType> types(std::begin(kQuantTypes), std::end(kQuantTypes));
  types.insert(types.end(), {DType::F16, DType::BF16});
  for (DType type : types) {
    // Unit roundoffs of the two operands: quantized weights are decoded to f16, F16/BF16 ones are exact;
    // activations are rounded to bf16 against BF16 weights, to f16 otherwise.
    const double uw = type == DType::F16 || type == DType::BF16 ? 0.0 : 0x1p-11;
    const double ux = type == DType::BF16 ? 0x1p-8 : 0x1p-11;
    const int64_t k = 2304, rows = 300;
    std::vector<uint8_t> wq = stored(type, rows, k);
    const std::vector<float> wf = decoded(type, wq, rows, k);
    const Tensor dw = fast.weight(Tensor::matrix_view(type, wq.data(), rows, k));
    for (int64_t tokens : {65, 130}) {
      const std::vector<float> x = normal(tokens * k);
      std::vector<float> want(static_cast<size_t>(tokens * rows));
      ref->matmul(Tensor::f32(const_cast<float*>(x.data()), tokens, k),
                  Tensor::matrix_view(type, wq.data(), rows, k), Tensor::f32(want.data(), tokens, rows));
      const std::vector<float> got = product(*fast_be.value(), fast, x, tokens, k, dw);
      int64_t outside = 0;
      double worst = 0.0;
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
          double sum_wx = 0.0, sum_w = 0.0;
          for (int64_t i = 0; i < k; ++i) {
            sum_wx += std::fabs(double(wf[r * k + i]) * x[t * k + i]);
            sum_w += std::fabs(wf[r * k + i]);
          }
          const double bound = sum_wx * (uw + ux + uw * ux + 2.0 * k * 0x1p-24) + sum_w * 0x1p-25;
          const double err = std::fabs(double(got[t * rows + r]) - want[t * rows + r]);
          worst = std::max(worst, err / bound);
          outside += err > bound;
        }
      }
      EXPECT_EQ(outside, 0) << dtype_name(type) << " tokens=" << tokens << ": worst error / bound " << worst;
    }
  }
}

// The default GEMVs of steps up to 64 tokens for Q4_K and Q8_0 weights (BackendOptions::exact_gemm = false)
// round each token's activations per 256 columns to int8 codes q = round_half_even(x * (127 / max |x|)) with
// the scale max |x| / 127 (as llama.cpp rounds them to Q8_K blocks) and multiply them exactly: the result is
// the product of the decoded weights with those rounded activations, up to float32 accumulation (each
// super-block's partial sum rounded a few times: well under 2^-19 of max |w| sum |x|, where one wrong
// code would cost ~d |w|).
TEST_F(CudaBackendTest, Int8GemvMultipliesActivationsRoundedPer256Columns) {
  auto fast_be = create_backend("cuda", BackendOptions{.threads = 0, .exact_gemm = false});
  ASSERT_TRUE(fast_be.ok()) << fast_be.status().message();
  Mirror fast(*fast_be.value());
  for (DType type : {DType::Q4_K, DType::Q8_0}) {
    for (int64_t k : {256, 2304}) {
      const int64_t rows = 300;  // a partial 16-row block
      std::vector<uint8_t> wq = stored(type, rows, k);
      const std::vector<float> wf = decoded(type, wq, rows, k);
      const Tensor dw = fast.weight(Tensor::matrix_view(type, wq.data(), rows, k));
      for (int64_t tokens : {1, 3, 5, 8, 13}) {  // 5 and up: a quantize pass; 13: two tiles of 8
        std::vector<float> x = normal(tokens * k, tokens == 3 ? 1e3f : tokens == 1 ? 1e-3f : 1.0f);
        if (tokens == 8) std::fill(x.begin() + k, x.begin() + k + 256, 0.0f);  // a block of scale 0
        const std::vector<double> xq = rounded_per_256(x);
        const std::vector<float> got = product(*fast_be.value(), fast, x, tokens, k, dw);
        int64_t outside = 0;
        double worst = 0.0;
        for (int64_t t = 0; t < tokens; ++t) {
          for (int64_t r = 0; r < rows; ++r) {
            double want = 0.0, sum_x = 0.0, max_w = 0.0;
            for (int64_t i = 0; i < k; ++i) {
              want += double(wf[r * k + i]) * xq[t * k + i];
              sum_x += std::fabs(xq[t * k + i]);
              max_w = std::max(max_w, std::fabs(double(wf[r * k + i])));
            }
            const double bound = 0x1p-19 * max_w * sum_x + 1e-30;
            const double err = std::fabs(double(got[t * rows + r]) - want);
            worst = std::max(worst, err / bound);
            outside += err > bound;
          }
        }
        EXPECT_EQ(outside, 0) << dtype_name(type) << " k=" << k << " tokens=" << tokens
                              << ": worst error / bound " << worst;
      }
    }
  }
}

// The default MoE expert products for Q4_K and Q6_K experts (exact_gemm = false): activations rounded as
// above, for steps of any size (experts receiving 1 to 70 pairs: one to nine tiles of 8). Each output is
// checked against the decoded weights times the rounded activations in double precision: the down
// product within the bound above, the gate/up output silu(g) * u within what the bounds of g and u
// allow (|silu'| <= 1.1) plus float32 rounding of silu. A token routed alone gets the same bits as in
// the steps of 40 and 70.
TEST_F(CudaBackendTest, ExpertInt8ProductsMultiplyActivationsRoundedPer256Columns) {
  auto fast_be = create_backend("cuda", BackendOptions{.threads = 0, .exact_gemm = false});
  ASSERT_TRUE(fast_be.ok()) << fast_be.status().message();
  Backend& fb = *fast_be.value();
  Mirror fast(fb);
  const int64_t n_experts = 16, k = 4, hidden = 512, inter = 300, down_cols = 768, down_rows = 200;
  struct Experts {
    std::vector<uint8_t> q;
    std::vector<float> f;
    ExpertMatrices m;
  };
  // n_experts [rows, cols] matrices as one stack; m points at the device copy.
  const auto experts = [&](DType type, int64_t rows, int64_t cols) {
    Experts x{stored(type, rows * n_experts, cols), {}, {}};
    x.f = decoded(type, x.q, rows * n_experts, cols);
    const Tensor w = fast.weight(Tensor::matrix_view(type, x.q.data(), rows, cols, n_experts));
    std::vector<const void*> table;
    for (int64_t e = 0; e < n_experts; ++e) table.push_back(w.matrix(e).data);
    x.m = {type, n_experts, rows, cols, row_bytes(type, cols), fast.array(table)};
    return x;
  };
  // Routing of `logits` [n, n_experts] by the reference into h, and its copy on the device.
  const auto route = [&](const std::vector<float>& logits, HostRouting& h) {
    ref->moe_route(Tensor::f32(const_cast<float*>(logits.data()), h.r.n_tokens, n_experts), true, h.r);
    return fast.routing(h);
  };
  for (DType type : {DType::Q4_K, DType::Q6_K}) {
    SCOPED_TRACE(dtype_name(type));
    const Experts gate = experts(type, inter, hidden), up = experts(type, inter, hidden);
    const Experts down = experts(type, down_rows, down_cols);
    for (int64_t n :
         {1, 40, 70}) {  // 70: prefill-like, blocks of several tiles (expert 0: 32 + 32 + 6 pairs)
      SCOPED_TRACE("tokens=" + std::to_string(n));
      const int64_t pairs = n * k;
      std::vector<float> logits = normal(n * n_experts);
      for (int64_t t = 0; t < n; ++t) logits[size_t(t * n_experts)] = 10.0f;  // expert 0 takes every token
      HostRouting rt(n, n_experts, k);
      const MoeRouting drt = route(logits, rt);
      // Activation scales far from 1, and a 256-column block of zeros (scale 0).
      std::vector<float> x = normal(n * hidden, n == 1 ? 1e-3f : 1.0f), xd = normal(pairs * down_cols, 30.0f);
      std::fill(x.end() - 256, x.end(), 0.0f);
      const Tensor act = fast.f32(std::vector<float>(size_t(pairs * inter)), pairs, inter);
      const Tensor dn = fast.f32(std::vector<float>(size_t(pairs * down_rows)), pairs, down_rows);
      fb.expert_gate_up_silu(fast.f32(x, n, hidden), gate.m, up.m, drt, act);
      fb.expert_matmul(fast.f32(xd, pairs, down_cols), down.m, drt, dn);
      const std::vector<float> got_act = fast.host(act), got_dn = fast.host(dn);
      ASSERT_TRUE(fb.check().ok());
      const std::vector<double> xq = rounded_per_256(x), xdq = rounded_per_256(xd);
      // Product of row r of expert e's matrix (of `cols` columns) with the rounded activations at a,
      // and its error bound.
      const auto dot = [](const Experts& w, int64_t rows, int64_t cols, int64_t e, int64_t r,
                          const double* a) {
        double sum = 0.0, sum_x = 0.0, max_w = 0.0;
        const float* wr = w.f.data() + (e * rows + r) * cols;
        for (int64_t i = 0; i < cols; ++i) {
          sum += double(wr[i]) * a[i];
          sum_x += std::fabs(a[i]);
          max_w = std::max(max_w, std::fabs(double(wr[i])));
        }
        return std::pair<double, double>(sum, 0x1p-19 * max_w * sum_x + 1e-30);
      };
      int64_t outside = 0;
      double worst = 0.0;
      const auto check = [&](float got, double want, double bound) {
        const double err = std::fabs(double(got) - want);
        worst = std::max(worst, err / bound);
        outside += err > bound;
      };
      for (int64_t i = 0; i < pairs; ++i) {
        const int64_t p = rt.order[size_t(i)], t = p / k, e = rt.ids[size_t(p)];
        for (int64_t r = 0; r < inter; ++r) {
          const auto [g, bg] = dot(gate, inter, hidden, e, r, xq.data() + t * hidden);
          const auto [u, bu] = dot(up, inter, hidden, e, r, xq.data() + t * hidden);
          const double silu = g / (1.0 + std::exp(-g)), want = silu * u;
          check(got_act[size_t(i * inter + r)], want,
                1.1 * bg * (std::fabs(u) + bu) + std::fabs(silu) * bu + 1e-6 * std::fabs(want) + 1e-30);
        }
        for (int64_t r = 0; r < down_rows; ++r) {
          const auto [v, bv] = dot(down, down_rows, down_cols, e, r, xdq.data() + i * down_cols);
          check(got_dn[size_t(i * down_rows + r)], v, bv);
        }
      }
      EXPECT_EQ(outside, 0) << "worst error / bound " << worst;
      if (n == 1) continue;
      for (int64_t t : {int64_t{0}, int64_t{17}, n - 1}) {
        SCOPED_TRACE("token " + std::to_string(t) + " alone");
        HostRouting one(1, n_experts, k);
        const MoeRouting done = route(
            std::vector<float>(logits.begin() + t * n_experts, logits.begin() + (t + 1) * n_experts), one);
        std::vector<float> xd1(size_t(k * down_cols));
        for (int64_t j = 0; j < k; ++j)
          std::copy_n(xd.begin() + rt.rank[size_t(t * k + j)] * down_cols, down_cols,
                      xd1.begin() + one.rank[size_t(j)] * down_cols);
        const Tensor a1 = fast.f32(std::vector<float>(size_t(k * inter)), k, inter);
        const Tensor d1 = fast.f32(std::vector<float>(size_t(k * down_rows)), k, down_rows);
        fb.expert_gate_up_silu(
            fast.f32(std::vector<float>(x.begin() + t * hidden, x.begin() + (t + 1) * hidden), 1, hidden),
            gate.m, up.m, done, a1);
        fb.expert_matmul(fast.f32(xd1, k, down_cols), down.m, done, d1);
        const std::vector<float> h1 = fast.host(a1), hd1 = fast.host(d1);
        for (int64_t j = 0; j < k; ++j) {
          const int64_t from = rt.rank[size_t(t * k + j)], to = one.rank[size_t(j)];
          EXPECT_TRUE(std::equal(h1.begin() + to * inter, h1.begin() + (to + 1) * inter,
                                 got_act.begin() + from * inter))
              << "gate/up rows of choice " << j;
          EXPECT_TRUE(std::equal(hd1.begin() + to * down_rows, hd1.begin() + (to + 1) * down_rows,
                                 got_dn.begin() + from * down_rows))
              << "down rows of choice " << j;
        }
      }
      EXPECT_TRUE(fb.check().ok());
    }
  }
}

// A token's matmul result does not depend on the rest of its step: among steps of up to
// kGemvMaxTokens tokens (all types; float32-accurate and 8-bit-activation GEMVs alike), and among
// batched steps of kGemvMaxTokens + 1 .. kKquantMaxTokens tokens (Q4_K, Q6_K, Q8_0; the two ranges use
// different kernels, except Q4_K and Q8_0 with 8-bit activations: one kernel for all).
TEST_F(CudaBackendTest, SmallStepMatmulIsBatchInvariant) {
  auto fast_be = create_backend("cuda", BackendOptions{.threads = 0, .exact_gemm = false});
  ASSERT_TRUE(fast_be.ok()) << fast_be.status().message();
  Mirror fast(*fast_be.value());
  for (bool exact : {true, false}) {
    Backend& b = exact ? *be : *fast_be.value();
    Mirror& m = exact ? *mirror : fast;
    for (int64_t k : {512, 2304}) {
      const int64_t rows = 140;  // a full and a partial 128-row block of the batched kernels
      for (DType type : kAllTypes) {
        const bool kquant = type == DType::Q4_K || type == DType::Q6_K || type == DType::Q8_0;
        const int64_t max_n = kquant ? kKquantMaxTokens : kGemvMaxTokens;
        std::vector<uint8_t> wq = stored(type, rows, k);
        const Tensor dw = m.weight(Tensor::matrix_view(type, wq.data(), rows, k));
        const Tensor dx = m.f32(normal(max_n * k), max_n, k);
        // Row t of the reference: token t alone (small steps), or in the step of all max_n tokens.
        auto run = [&](int64_t t0, int64_t n) {
          const Tensor out = m.f32(std::vector<float>(static_cast<size_t>(n * rows)), n, rows);
          b.matmul(dx.row_slice(t0, n), dw, out);
          return m.host(out);
        };
        std::vector<float> alone;
        for (int64_t t = 0; t < kGemvMaxTokens; ++t) {
          const std::vector<float> r = run(t, 1);
          alone.insert(alone.end(), r.begin(), r.end());
        }
        const std::vector<float> all = kquant ? run(0, max_n) : std::vector<float>();
        if (!exact && (type == DType::Q4_K || type == DType::Q8_0)) {  // one 8-bit GEMV for 1 .. 64 tokens
          EXPECT_EQ(std::vector<float>(all.begin(), all.begin() + kGemvMaxTokens * rows), alone)
              << dtype_name(type) << " k=" << k << ": tokens alone and in a step of " << max_n;
        }
        for (int64_t n : {2, 3, 5, 8, 9, 16, 17, 40, 63}) {
          if (n > max_n) continue;
          const int64_t t0 = n <= kGemvMaxTokens ? kGemvMaxTokens - n : max_n - n;
          const std::vector<float>& want = n <= kGemvMaxTokens ? alone : all;
          const std::vector<float> got = run(t0, n);
          for (int64_t t = 0; t < n; ++t)
            EXPECT_EQ(std::vector<float>(got.begin() + t * rows, got.begin() + (t + 1) * rows),
                      std::vector<float>(want.begin() + (t0 + t) * rows, want.begin() + (t0 + t + 1) * rows))
                << dtype_name(type) << " k=" << k << " exact=" << exact << ": token " << t0 + t
                << " in a step of " << n;
        }
      }
    }
    ASSERT_TRUE(b.check().ok());
  }
}

// The single-token Q8_0 GEMV against 8-bit activations streams its weights through deeper stages when
// its launch has at most two blocks per SM: a row's bits do not depend on that.
TEST_F(CudaBackendTest, Int8GemvRowsDoNotDependOnLaunchShape) {
  auto fast_be = create_backend("cuda", BackendOptions{.threads = 0, .exact_gemm = false});
  ASSERT_TRUE(fast_be.ok()) << fast_be.status().message();
  Mirror fast(*fast_be.value());
  // 600 blocks of 16 rows: more than two per SM on GPUs of up to 299 SMs; 9 blocks: fewer.
  const int64_t k = 512, big = 16 * 600, small = 140;
  std::vector<uint8_t> wq = stored(DType::Q8_0, big, k);
  const Tensor x = fast.f32(normal(k), 1, k);
  auto run = [&](int64_t rows) {
    const Tensor w = fast.weight(Tensor::matrix_view(DType::Q8_0, wq.data(), rows, k));
    const Tensor out = fast.f32(std::vector<float>(static_cast<size_t>(rows)), 1, rows);
    fast_be.value()->matmul(x, w, out);
    return fast.host(out);
  };
  const std::vector<float> all = run(big), first = run(small);
  EXPECT_EQ(std::vector<float>(all.begin(), all.begin() + small), first);
  ASSERT_TRUE(fast_be.value()->check().ok());
}

TEST_F(CudaBackendTest, EmbedDecodesStoredRows) {
  const int64_t k = 512, rows = 6;
  const std::vector<int32_t> ids = {5, 0, 3, 5};
  for (DType type : kAllTypes) {
    std::vector<uint8_t> table = stored(type, rows, k);
    const Tensor dt = mirror->weight(Tensor::matrix_view(type, table.data(), rows, k));
    const Tensor out = mirror->f32(std::vector<float>(ids.size() * k), static_cast<int64_t>(ids.size()), k);
    be->embed(dt, mirror->array(ids), out);
    std::vector<float> want(ids.size() * k);
    for (size_t i = 0; i < ids.size(); ++i)
      quant::dequantize_row(type, table.data() + static_cast<size_t>(ids[i]) * row_bytes(type, k),
                            want.data() + i * k, k);
    EXPECT_LE(max_rel_err(mirror->host(out), want), 1e-6f) << dtype_name(type);
  }
}

TEST_F(CudaBackendTest, UnsupportedShapesAreReportedByCheck) {
  const std::vector<float> f(64 * 64);
  const Tensor w = mirror->f32(f, 64, 64);
  Tensor q2k = w;
  q2k.type = DType::Q2_K;
  const Tensor x = mirror->f32(f, 1, 64), out = mirror->f32(f, 1, 64);
  be->matmul(x, q2k, out);
  const Status st = be->check();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("Q2_K"), std::string::npos) << st.message();
  EXPECT_TRUE(be->check().ok()) << "check() clears the reported failure";

  AttentionParams p{1, 1, 512, 1.0f, 0};
  be->attention(x, w, w, AttentionLayout{}, p, out);
  EXPECT_FALSE(be->check().ok());
}

}  // namespace
}  // namespace ferrum::testing
