// Weight quantizers: byte-identical to llama-quantize (the quantized GGUF fixtures were made by
// llama.cpp's llama-quantize from the F32 fixtures), and round-trip errors within what each format's
// step size allows.
#include "quant/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "formats/gguf.h"
#include "quant/blocks.h"
#include "quant/matmul.h"
#include "test_util.h"

namespace ferrum::quant {
namespace {

struct QuantizedFile {
  const char* parent;  // the F32 file llama-quantize read
  const char* file;
};

class LlamaQuantizeTest : public ::testing::TestWithParam<QuantizedFile> {};

TEST_P(LlamaQuantizeTest, EveryTensorByteIdentical) {
  const std::string dir = "fixtures/gguf/synth/";
  FERRUM_REQUIRE_SHARED(dir + GetParam().file);
  auto parent = GgufFile::open(testing::shared_path(dir + GetParam().parent));
  auto quant = GgufFile::open(testing::shared_path(dir + GetParam().file));
  ASSERT_TRUE(parent.ok()) << parent.status().message();
  ASSERT_TRUE(quant.ok()) << quant.status().message();
  int compared = 0;
  for (const GgufTensorInfo& q : (*quant)->tensors()) {
    const GgufTensorInfo* src = (*parent)->find_tensor(q.name);
    ASSERT_NE(src, nullptr) << q.name;
    ASSERT_EQ(src->type, DType::F32) << q.name;
    if (q.type == DType::F32) continue;
    ASSERT_TRUE(can_quantize(q.type)) << q.name << " " << dtype_name(q.type);
    std::vector<uint8_t> ours(q.nbytes);
    quantize_row(q.type, reinterpret_cast<const float*>(src->data), ours.data(), src->n_elements());
    size_t first_diff = 0;
    while (first_diff < ours.size() && ours[first_diff] == q.data[first_diff]) ++first_diff;
    EXPECT_EQ(first_diff, ours.size()) << q.name << " (" << dtype_name(q.type) << "): first differing byte "
                                       << first_diff << " of " << ours.size();
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Synth, LlamaQuantizeTest,
    ::testing::Values(QuantizedFile{"synth-llama-f32.gguf", "synth-llama-f16.gguf"},
                      QuantizedFile{"synth-llama-f32.gguf", "synth-llama-q8_0.gguf"},
                      QuantizedFile{"synth-llama-f32.gguf", "synth-llama-q4_0.gguf"},
                      QuantizedFile{"synth-llama-f32.gguf", "synth-llama-q4_k_m.gguf"},
                      QuantizedFile{"synth-llama-f32.gguf", "synth-llama-q5_k_m.gguf"},
                      QuantizedFile{"synth-llama-f32.gguf", "synth-llama-q6_k.gguf"},
                      QuantizedFile{"synth-llama-f32.gguf", "synth-llama-q4_k_m-mix.gguf"},
                      QuantizedFile{"synth-qwen2-f32.gguf", "synth-qwen2-q8_0.gguf"},
                      QuantizedFile{"synth-qwen2-f32.gguf", "synth-qwen2-q4_k_m.gguf"},
                      QuantizedFile{"synth-qwen2-f32.gguf", "synth-qwen2-q4_k_m-mix.gguf"}),
    [](const auto& info) {
      std::string n = info.param.file;
      n = n.substr(0, n.size() - 5);
      for (char& c : n)
        if (c == '-' || c == '.') c = '_';
      return n;
    });

// Gaussian data with a different scale per 256 elements (the K-quant super-block: within one, a
// block of much smaller scale than its neighbours legitimately rounds to zero).
std::vector<float> gaussian_rows(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(0.01f, 2.0f);
  std::vector<float> x(static_cast<size_t>(n));
  float s = 1;
  for (int64_t i = 0; i < n; ++i) {
    if (i % 256 == 0) s = scale(rng);
    x[i] = s * normal(rng);
  }
  return x;
}

struct RoundTrip {
  DType type;
  // Bound on rms(error) / rms(block) for Gaussian data: the format's step over sqrt(12) with margin.
  double max_rel_rms;
};

class RoundTripTest : public ::testing::TestWithParam<RoundTrip> {};

TEST_P(RoundTripTest, ErrorWithinStepSize) {
  const DType type = GetParam().type;
  std::mt19937 rng(7);
  const int64_t n = 256 * 64;
  const std::vector<float> x = gaussian_rows(n, rng);
  std::vector<uint8_t> q(row_bytes(type, n));
  quantize_row(type, x.data(), q.data(), n);
  std::vector<float> back(static_cast<size_t>(n));
  dequantize_row(type, q.data(), back.data(), n);
  // Relative to each 32-block's own rms, so blocks of small scale count as much as large ones.
  double worst = 0, mean = 0;
  for (int64_t b = 0; b < n / 32; ++b) {
    double e2 = 0, x2 = 0;
    for (int64_t i = 32 * b; i < 32 * b + 32; ++i) {
      e2 += double(x[i] - back[i]) * double(x[i] - back[i]);
      x2 += double(x[i]) * double(x[i]);
    }
    worst = std::max(worst, std::sqrt(e2 / x2));
    mean += std::sqrt(e2 / x2) / double(n / 32);
  }
  EXPECT_LT(mean, GetParam().max_rel_rms) << dtype_name(type);
  EXPECT_LT(worst, 3 * GetParam().max_rel_rms) << dtype_name(type);
}

// Steps: Q8_0 2*amax/254, Q4_0 2*amax/16, Q5_0 2*amax/32, Q4_1 range/15; K-quants share scales over
// 256 elements, so a block of small scale next to large ones gets coarser steps.
INSTANTIATE_TEST_SUITE_P(All, RoundTripTest,
                         ::testing::Values(RoundTrip{DType::F16, 0.0005}, RoundTrip{DType::BF16, 0.004},
                                           RoundTrip{DType::Q8_0, 0.007}, RoundTrip{DType::Q4_0, 0.11},
                                           RoundTrip{DType::Q4_1, 0.10}, RoundTrip{DType::Q5_0, 0.055},
                                           RoundTrip{DType::Q4_K, 0.09}, RoundTrip{DType::Q5_K, 0.045},
                                           RoundTrip{DType::Q6_K, 0.022}),
                         [](const auto& info) { return std::string(dtype_name(info.param.type)); });

// Per element, Q8_0 is off by at most half a step (plus the fp16 rounding of the scale) and Q4_0 by at
// most one step (its grid -8..7 loses +8).
TEST(RoundTripBound, Q8_0AndQ4_0PerElement) {
  std::mt19937 rng(11);
  const int64_t n = 32 * 512;
  const std::vector<float> x = gaussian_rows(n, rng);
  for (DType type : {DType::Q8_0, DType::Q4_0}) {
    std::vector<uint8_t> q(row_bytes(type, n));
    quantize_row(type, x.data(), q.data(), n);
    std::vector<float> back(static_cast<size_t>(n));
    dequantize_row(type, q.data(), back.data(), n);
    for (int64_t b = 0; b < n / 32; ++b) {
      float amax = 0;
      for (int64_t i = 32 * b; i < 32 * b + 32; ++i) amax = std::max(amax, std::fabs(x[i]));
      const float bound =
          type == DType::Q8_0 ? amax / 127 * (0.5f + 127.f / 2048) : amax / 8 * (1 + 8.f / 2048);
      for (int64_t i = 32 * b; i < 32 * b + 32; ++i)
        ASSERT_LE(std::fabs(x[i] - back[i]), bound) << dtype_name(type) << " element " << i;
    }
  }
}

TEST(RoundTripBound, ZeroBlocksStayZero) {
  const std::vector<float> x(512, 0.0f);
  for (DType type :
       {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    std::vector<uint8_t> q(row_bytes(type, 512));
    quantize_row(type, x.data(), q.data(), 512);
    std::vector<float> back(512, 1.0f);
    dequantize_row(type, q.data(), back.data(), 512);
    for (float v : back) ASSERT_EQ(v, 0.0f) << dtype_name(type);
  }
}

}  // namespace
}  // namespace ferrum::quant
