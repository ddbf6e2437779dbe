// Random weight and activation data for the quant tests.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/half.h"

namespace ferrum::testing {

// Byte offsets of the fp16 scale fields of a block, so random blocks get finite, sensible scales.
inline std::vector<int> fp16_fields(DType t) {
  switch (t) {
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0:
      return {0};
    case DType::Q4_1:
    case DType::Q4_K:
    case DType::Q5_K:
      return {0, 2};
    case DType::Q6_K:
      return {208};
    default:
      return {};
  }
}

// rows x k weights of `type`: random bytes (every bit pattern of the codes and packed scales) with
// fp16 scales drawn from N(0, 0.05^2) for block types; N(0, 1) values for float types.
inline std::vector<uint8_t> random_weights(DType type, int64_t rows, int64_t k, std::mt19937& rng) {
  const size_t rb = row_bytes(type, k);
  std::vector<uint8_t> w(rb * static_cast<size_t>(rows));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  if (type == DType::F32 || type == DType::F16 || type == DType::BF16) {
    for (int64_t i = 0; i < rows * k; ++i) {
      const float v = normal(rng);
      if (type == DType::F32) std::memcpy(&w[4 * i], &v, 4);
      const uint16_t h = type == DType::F16 ? fp32_to_fp16(v) : fp32_to_bf16(v);
      if (type != DType::F32) std::memcpy(&w[2 * i], &h, 2);
    }
    return w;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
  const auto& tr = traits(type);
  for (size_t blk = 0; blk < w.size() / static_cast<size_t>(tr.block_bytes); ++blk) {
    for (int off : fp16_fields(type)) {
      const uint16_t h = fp32_to_fp16(0.05f * normal(rng));
      std::memcpy(&w[blk * static_cast<size_t>(tr.block_bytes) + static_cast<size_t>(off)], &h, 2);
    }
  }
  return w;
}

}  // namespace ferrum::testing
