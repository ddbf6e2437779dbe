// Layouts of quantized activation rows (internal to the kernels; callers only size them with
// act_row_bytes). Both keep the int8 values contiguous and first so SIMD loads are aligned when the
// row is, and precompute the sums the kernels need to handle unsigned weight codes.
//
// Q8_0 (k a multiple of 32), llama.cpp's x86 rounding: per block of 32, d = fp16(max|x| / 127) and
// q = round_half_even(x * (127 / max|x|)).
//   int8_t  qs[k]
//   int32_t nsum4[k / 4]    at k:          -(qs[4i] + qs[4i+1] + qs[4i+2] + qs[4i+3])
//   float   d[k / 32]       at 2k:         the fp16-rounded block scale, as float
// Q8_K (k a multiple of 256), llama.cpp's quantize_row_q8_K: per block of 256, with max the signed
// value of largest magnitude and s = -127 / max: q = min(127, round_half_even(x * s)), d = 1 / s.
//   int8_t  qs[k]
//   float   d[k / 256]      at k
//   int16_t bsums[k / 16]   at k + k / 64: sums of 16 consecutive qs
//   float   dsums[k / 32]   at k + k / 64 + k / 8: d * (sum of 32 consecutive qs), the factors of the
//                           Q4_K/Q5_K mins, precomputed once per row instead of once per weight tile
// Row sizes are rounded up to 64 bytes so consecutive rows stay aligned.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferrum::quant {

constexpr size_t round_up_64(size_t n) { return (n + 63) & ~size_t{63}; }

struct ActQ8_0 {
  static size_t row_bytes(int64_t k) {
    return round_up_64(static_cast<size_t>(k) * 2 + static_cast<size_t>(k) / 8);
  }
  static int8_t* qs(void* row) { return static_cast<int8_t*>(row); }
  static int32_t* nsum4(void* row, int64_t k) {
    return reinterpret_cast<int32_t*>(static_cast<uint8_t*>(row) + k);
  }
  static float* d(void* row, int64_t k) {
    return reinterpret_cast<float*>(static_cast<uint8_t*>(row) + 2 * k);
  }
  static const int8_t* qs(const void* row) { return static_cast<const int8_t*>(row); }
  static const int32_t* nsum4(const void* row, int64_t k) {
    return reinterpret_cast<const int32_t*>(static_cast<const uint8_t*>(row) + k);
  }
  static const float* d(const void* row, int64_t k) {
    return reinterpret_cast<const float*>(static_cast<const uint8_t*>(row) + 2 * k);
  }
};

struct ActQ8_K {
  static size_t row_bytes(int64_t k) {
    return round_up_64(static_cast<size_t>(k) + static_cast<size_t>(k) / 64 + static_cast<size_t>(k) / 4);
  }
  static int8_t* qs(void* row) { return static_cast<int8_t*>(row); }
  static float* d(void* row, int64_t k) { return reinterpret_cast<float*>(static_cast<uint8_t*>(row) + k); }
  static int16_t* bsums(void* row, int64_t k) {
    return reinterpret_cast<int16_t*>(static_cast<uint8_t*>(row) + k + k / 64);
  }
  static float* dsums(void* row, int64_t k) {
    return reinterpret_cast<float*>(static_cast<uint8_t*>(row) + k + k / 64 + k / 8);
  }
  static const int8_t* qs(const void* row) { return static_cast<const int8_t*>(row); }
  static const float* d(const void* row, int64_t k) {
    return reinterpret_cast<const float*>(static_cast<const uint8_t*>(row) + k);
  }
  static const int16_t* bsums(const void* row, int64_t k) {
    return reinterpret_cast<const int16_t*>(static_cast<const uint8_t*>(row) + k + k / 64);
  }
  static const float* dsums(const void* row, int64_t k) {
    return reinterpret_cast<const float*>(static_cast<const uint8_t*>(row) + k + k / 64 + k / 8);
  }
};

// Scalar activation quantizers (the definition of the two formats; SIMD versions must match them
// bit for bit).
void quantize_act_q8_0_scalar(const float* x, void* qx, int64_t k);
void quantize_act_q8_k_scalar(const float* x, void* qx, int64_t k);

}  // namespace ferrum::quant
