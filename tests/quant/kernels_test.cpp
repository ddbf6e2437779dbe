// Every matmul kernel of this CPU against the scalar reference, on awkward shapes.
//
// Kernels that round activations first (to llama.cpp's Q8_0 / Q8_K formats) are compared twice:
// tightly against the exact product of the dequantized weights and the *rounded* activations (the
// kernel then differs only by float32 accumulation order), and against the float reference within
// the bound the activation rounding allows, sum_i |w_i| * max_err(a_i).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "quant/act.h"
#include "quant/matmul.h"
#include "quant_test_util.h"
#include "test_util.h"

namespace ferrum::quant {
namespace {

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
using AlignedBuf = std::unique_ptr<uint8_t, AlignedFree>;
AlignedBuf aligned_bytes(size_t n) {
  return AlignedBuf(static_cast<uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64 + 64)));
}

// Activations: Gaussian, plus an all-zero token and a token with one large outlier per block.
std::vector<float> make_activations(int64_t n_tokens, int64_t k, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n_tokens * k));
  for (auto& v : x) v = normal(rng);
  if (n_tokens > 2)
    for (int64_t i = 0; i < k; ++i) x[1 * k + i] = 0.0f;
  if (n_tokens > 3)
    for (int64_t i = 0; i < k; i += 32) x[2 * k + i + (i / 32) % 32] = 40.0f;
  return x;
}

// Largest error the kernel's activation rounding may put on element i (for the loose comparison).
std::vector<double> act_error_bound(DType act_type, const float* x, int64_t k) {
  std::vector<double> e(static_cast<size_t>(k), 0.0);
  if (act_type == DType::F32) return e;
  const int64_t blk = act_type == DType::Q8_0 ? 32 : 256;
  for (int64_t b = 0; b < k / blk; ++b) {
    double amax = 0;
    for (int64_t i = b * blk; i < (b + 1) * blk; ++i) amax = std::max(amax, double(std::fabs(x[i])));
    // Half a step of amax / 127, plus the rounding of the scale (fp16 for Q8_0) over up to 127 steps.
    const double scale_err = act_type == DType::Q8_0 ? 1.0 / 2048 : 1e-6;
    for (int64_t i = b * blk; i < (b + 1) * blk; ++i)
      e[i] = amax / 127 * 0.5 + std::fabs(x[i]) * scale_err + 1e-30;
  }
  return e;
}

struct Shape {
  int64_t n_tokens, rows, k;
};

void check_kernel(const MatmulKernel& kern, const Shape& s, std::mt19937& rng) {
  SCOPED_TRACE(std::string(kern.name) + " tokens=" + std::to_string(s.n_tokens) +
               " rows=" + std::to_string(s.rows) + " k=" + std::to_string(s.k));
  const DType wt = kern.weight_type;
  const size_t wrb = row_bytes(wt, s.k);
  const std::vector<uint8_t> w = testing::random_weights(wt, s.rows, s.k, rng);
  const std::vector<float> x = make_activations(s.n_tokens, s.k, rng);

  // Activation rows as the backend passes them: converted (64-byte aligned rows) or float with a
  // stride larger than k.
  const size_t arb =
      kern.quantize_act ? act_row_bytes(kern, s.k) : static_cast<size_t>(s.k + 5) * sizeof(float);
  AlignedBuf act = aligned_bytes(arb * static_cast<size_t>(s.n_tokens));
  std::vector<float> xr(static_cast<size_t>(s.n_tokens * s.k));  // what the kernel multiplies by
  for (int64_t t = 0; t < s.n_tokens; ++t) {
    void* row = act.get() + t * arb;
    if (kern.quantize_act) {
      kern.quantize_act(&x[t * s.k], row, s.k);
      dequantize_act(kern, row, &xr[t * s.k], s.k);
    } else {
      std::memcpy(row, &x[t * s.k], static_cast<size_t>(s.k) * sizeof(float));
      std::memcpy(&xr[t * s.k], &x[t * s.k], static_cast<size_t>(s.k) * sizeof(float));
    }
  }

  // Two slices, as the backend splits rows over threads; ldy leaves a gap that must stay untouched.
  const int64_t ldy = s.rows + 3;
  std::vector<float> y(static_cast<size_t>(s.n_tokens * ldy), std::numeric_limits<float>::quiet_NaN());
  const int64_t split = s.rows / 2;
  if (split > 0) kern.gemm(w.data(), wrb, act.get(), arb, s.k, s.n_tokens, y.data(), ldy, split);
  kern.gemm(w.data() + split * wrb, wrb, act.get(), arb, s.k, s.n_tokens, y.data() + split, ldy,
            s.rows - split);

  std::vector<float> wrow(static_cast<size_t>(s.k));
  for (int64_t r = 0; r < s.rows; ++r) {
    dequantize_row(wt, w.data() + r * wrb, wrow.data(), s.k);
    for (int64_t t = 0; t < s.n_tokens; ++t) {
      const float* xt = &x[t * s.k];
      const float* xrt = &xr[t * s.k];
      const std::vector<double> aerr = act_error_bound(kern.act_type, xt, s.k);
      double exact_rounded = 0, exact_float = 0, mag = 0, rounding_bound = 0;
      for (int64_t i = 0; i < s.k; ++i) {
        exact_rounded += double(wrow[i]) * xrt[i];
        exact_float += double(wrow[i]) * xt[i];
        mag += std::fabs(double(wrow[i]) * xrt[i]);
        rounding_bound += std::fabs(double(wrow[i])) * aerr[i];
      }
      const float got = y[t * ldy + r];
      // float32 accumulation: a few ulps of the magnitude sum; one wrong element in 4096 is ~2e-4.
      const double tight = 1e-5 * mag + 1e-30;
      ASSERT_NEAR(got, exact_rounded, tight) << "row " << r << " token " << t << " (vs rounded activations)";
      ASSERT_NEAR(got, exact_float, tight + rounding_bound) << "row " << r << " token " << t << " (vs float)";
    }
  }
  for (int64_t t = 0; t < s.n_tokens; ++t)
    for (int64_t r = s.rows; r < ldy; ++r) ASSERT_TRUE(std::isnan(y[t * ldy + r])) << "wrote past n_rows";
}

class KernelTest : public ::testing::TestWithParam<DType> {};

TEST_P(KernelTest, MatchesReferenceOnAwkwardShapes) {
  const DType wt = GetParam();
  const int64_t blk = traits(wt).block_elems == 1 ? 32 : traits(wt).block_elems;
  std::vector<int64_t> ks = {blk, 3 * blk, 4096};
  if (traits(wt).block_elems == 1) ks.insert(ks.end(), {1, 7, 100});  // float types take any k
  std::mt19937 rng(1234);
  int n_kernels = 0;
  for (const MatmulKernel* kern : all_matmul_kernels(wt)) {
    if (kern == reference_matmul_kernel(wt)) continue;
    ++n_kernels;
    for (int64_t k : ks)
      for (int64_t rows : {1, 7, 33, 259})
        for (int64_t n_tokens : {1, 2, 3, 5, 8, 17}) {
          // The largest shapes only with a few token counts, to keep the test fast.
          if (k == 4096 && rows == 259 && n_tokens != 1 && n_tokens != 17) continue;
          check_kernel(*kern, {n_tokens, rows, k}, rng);
          if (HasFatalFailure()) return;
        }
  }
  if (n_kernels == 0) GTEST_SKIP() << "no fast kernel for " << dtype_name(wt) << " on this CPU";
}

INSTANTIATE_TEST_SUITE_P(AllTypes, KernelTest,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0,
                                           DType::Q4_1, DType::Q5_0, DType::Q4_K, DType::Q5_K, DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// The SIMD activation quantizers must reproduce the scalar definition (act.h) bit for bit.
TEST(ActivationQuantizers, MatchScalarDefinition) {
  std::mt19937 rng(99);
  for (DType wt :
       {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    for (const MatmulKernel* kern : all_matmul_kernels(wt)) {
      if (!kern->quantize_act) continue;
      SCOPED_TRACE(kern->name);
      for (int64_t k : {256, 768, 4096}) {
        std::vector<float> x = make_activations(5, k, rng);
        // Block maximum 127 makes the scale exactly 1 (-1 for Q8_K): these values are ties.
        x[3 * k] = 127.f;
        x[3 * k + 1] = 2.5f;
        x[3 * k + 2] = -3.5f;
        x[3 * k + 3] = 0.5f;
        const size_t n = act_row_bytes(*kern, k);
        std::vector<uint8_t> fast(n, 0xAB), ref(n, 0xAB);
        for (int64_t t = 0; t < 5; ++t) {
          std::fill(fast.begin(), fast.end(), 0xAB);
          std::fill(ref.begin(), ref.end(), 0xAB);
          kern->quantize_act(&x[t * k], fast.data(), k);
          if (kern->act_type == DType::Q8_0) {
            quantize_act_q8_0_scalar(&x[t * k], ref.data(), k);
          } else {
            quantize_act_q8_k_scalar(&x[t * k], ref.data(), k);
          }
          ASSERT_EQ(fast, ref) << "token " << t << " k " << k;
        }
      }
    }
  }
}

// The scalar Q8_K quantizer against llama.cpp's rule spelled out differently: q = clamp(round(x * s))
// with s = -127 / (signed max), so the largest magnitude maps to -127 exactly, and d = 1 / s.
TEST(ActivationQuantizers, Q8KFollowsLlamaCppRule) {
  std::vector<float> x(256);
  for (int i = 0; i < 256; ++i) x[i] = std::sin(0.37f * float(i)) * 3.0f;
  x[17] = 5.0f;  // the extreme value is positive: it becomes -127
  std::vector<uint8_t> buf(ActQ8_K::row_bytes(256));
  quantize_act_q8_k_scalar(x.data(), buf.data(), 256);
  EXPECT_EQ(ActQ8_K::qs(buf.data())[17], -127);
  const float s = -127.f / 5.0f;
  EXPECT_EQ(*ActQ8_K::d(buf.data(), 256), 1 / s);
  int sum0 = 0;
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(ActQ8_K::qs(buf.data())[i], static_cast<int8_t>(std::nearbyint(x[i] * s)));
    sum0 += ActQ8_K::qs(buf.data())[i];
  }
  EXPECT_EQ(ActQ8_K::bsums(buf.data(), 256)[0], sum0);
}

}  // namespace
}  // namespace ferrum::quant
