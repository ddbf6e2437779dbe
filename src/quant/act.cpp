// Activation rows: sizes, scalar quantizers (the definition of the formats in act.h) and the way back
// to floats.
#include "quant/act.h"

#include <cmath>
#include <cstring>

#include "core/half.h"
#include "quant/matmul.h"

namespace ferrum::quant {

void quantize_act_q8_0_scalar(const float* x, void* qx, int64_t k) {
  int8_t* qs = ActQ8_0::qs(qx);
  int32_t* nsum4 = ActQ8_0::nsum4(qx, k);
  float* d = ActQ8_0::d(qx, k);
  for (int64_t b = 0; b < k / 32; ++b) {
    const float* xb = x + 32 * b;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    d[b] = fp16_to_fp32(fp32_to_fp16(amax / 127.f));
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    for (int j = 0; j < 32; ++j) qs[32 * b + j] = static_cast<int8_t>(std::nearbyint(xb[j] * id));
  }
  for (int64_t i = 0; i < k / 4; ++i) nsum4[i] = -(qs[4 * i] + qs[4 * i + 1] + qs[4 * i + 2] + qs[4 * i + 3]);
}

void quantize_act_q8_k_scalar(const float* x, void* qx, int64_t k) {
  int8_t* qs = ActQ8_K::qs(qx);
  float* d = ActQ8_K::d(qx, k);
  int16_t* bsums = ActQ8_K::bsums(qx, k);
  float* dsums = ActQ8_K::dsums(qx, k);
  for (int64_t b = 0; b < k / 256; ++b) {
    const float* xb = x + 256 * b;
    int8_t* q = qs + 256 * b;
    float max = 0, amax = 0;
    for (int j = 0; j < 256; ++j) {
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    if (amax == 0.0f) {
      d[b] = 0;
      std::memset(q, 0, 256);
    } else {
      const float iscale = -127.f / max;
      for (int j = 0; j < 256; ++j) {
        const float v = std::nearbyint(iscale * xb[j]);
        q[j] = static_cast<int8_t>(v > 127.f ? 127.f : v);
      }
      d[b] = 1 / iscale;
    }
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += q[16 * j + l];
      bsums[16 * b + j] = static_cast<int16_t>(s);
    }
    for (int j = 0; j < 8; ++j)
      dsums[8 * b + j] = d[b] * static_cast<float>(bsums[16 * b + 2 * j] + bsums[16 * b + 2 * j + 1]);
  }
}

size_t act_row_bytes(const MatmulKernel& kern, int64_t k) {
  switch (kern.act_type) {
    case DType::Q8_0:
      return ActQ8_0::row_bytes(k);
    case DType::Q8_K:
      return ActQ8_K::row_bytes(k);
    default:
      return static_cast<size_t>(k) * sizeof(float);
  }
}

void dequantize_act(const MatmulKernel& kern, const void* qx, float* x, int64_t k) {
  switch (kern.act_type) {
    case DType::Q8_0: {
      const int8_t* qs = ActQ8_0::qs(qx);
      const float* d = ActQ8_0::d(qx, k);
      for (int64_t i = 0; i < k; ++i) x[i] = d[i / 32] * static_cast<float>(qs[i]);
      return;
    }
    case DType::Q8_K: {
      const int8_t* qs = ActQ8_K::qs(qx);
      const float* d = ActQ8_K::d(qx, k);
      for (int64_t i = 0; i < k; ++i) x[i] = d[i / 256] * static_cast<float>(qs[i]);
      return;
    }
    default:
      std::memcpy(x, qx, static_cast<size_t>(k) * sizeof(float));
      return;
  }
}

}  // namespace ferrum::quant
