// What the CUDA backend promises beyond the op contract: quantized weights through every matmul
// path (GEMVs for small steps, tensor-core k-quant kernels for batched steps, f16 tiles + cuBLAS for
// large ones) against the scalar reference,
// a token's result independent of the rest of its step, quantized embedding rows, and
// failures reported through check(). Skips without a device. (The MoE ops are in the op contract.)
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

float max_rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  return max_abs_diff(got.data(), want.data(), got.size()) /
         std::max(1.0f, max_abs(want.data(), want.size()));
}

TEST_F(CudaBackendTest, QuantizedMatmulBothPathsMatchReference) {
  for (DType type : kQuantTypes) {
    for (int64_t k : {256, 2304}) {
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

// The default GEMVs of steps up to 64 tokens for Q4_K weights (BackendOptions::exact_gemm = false) round
// each token's activations per 256 columns to int8 codes q = round_half_even(x * (127 / max |x|)) with the
// scale max |x| / 127 (as llama.cpp rounds them to Q8_K blocks) and multiply them exactly: the result is
// the product of the decoded weights with those rounded activations, up to float32 accumulation (each
// super-block's partial sum rounded a few times: well under 2^-19 of max |w| sum |x|, where one wrong
// code would cost ~d |w|).
TEST_F(CudaBackendTest, Int8GemvMultipliesActivationsRoundedPer256Columns) {
  auto fast_be = create_backend("cuda", BackendOptions{.threads = 0, .exact_gemm = false});
  ASSERT_TRUE(fast_be.ok()) << fast_be.status().message();
  Mirror fast(*fast_be.value());
  for (DType type : {DType::Q4_K}) {
    for (int64_t k : {256, 2304}) {
      const int64_t rows = 300;  // a partial 16-row block
      std::vector<uint8_t> wq = stored(type, rows, k);
      const std::vector<float> wf = decoded(type, wq, rows, k);
      const Tensor dw = fast.weight(Tensor::matrix_view(type, wq.data(), rows, k));
      for (int64_t tokens : {1, 3, 5, 8, 13}) {  // 5 and up: a quantize pass; 13: two tiles of 8
        std::vector<float> x = normal(tokens * k, tokens == 3 ? 1e3f : tokens == 1 ? 1e-3f : 1.0f);
        if (tokens == 8) std::fill(x.begin() + k, x.begin() + k + 256, 0.0f);  // a block of scale 0
        std::vector<double> xq(x.size());
        for (size_t b = 0; b < x.size(); b += 256) {
          float amax = 0.0f;
          for (size_t i = b; i < b + 256; ++i) amax = std::max(amax, std::fabs(x[i]));
          const float id = amax > 0.0f ? 127.0f / amax : 0.0f, d = amax / 127.0f;
          for (size_t i = b; i < b + 256; ++i) xq[i] = std::nearbyint(double(x[i]) * id) * d;
        }
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

// A token's matmul result does not depend on the rest of its step: among steps of up to
// kGemvMaxTokens tokens (all types; float32-accurate and 8-bit-activation GEMVs alike), and among
// batched steps of kGemvMaxTokens + 1 .. kKquantMaxTokens tokens (Q4_K, Q6_K, Q8_0; the two ranges use
// different kernels, except Q4_K with 8-bit activations: one kernel for all).
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
        if (!exact && type == DType::Q4_K) {  // one 8-bit-activation GEMV for 1 .. 64 tokens
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
