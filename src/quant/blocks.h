// GGML block layouts (byte-compatible with ggml-common.h) of the weight types ferrum computes with,
// and of Q8_K, the activation partner of the K-quants.
#pragma once

#include <cstdint>

namespace ferrum::quant {

constexpr int kQK = 32;     // elements per block of the legacy types (Q4_0, Q4_1, Q5_0, Q8_0)
constexpr int kQK_K = 256;  // elements per super-block of the K-quants

// x = d * q, q = 4-bit value - 8. Element j of the block is the low nibble of qs[j] (j < 16) or the
// high nibble of qs[j - 16].
struct BlockQ4_0 {
  uint16_t d;  // fp16
  uint8_t qs[kQK / 2];
};

// x = d * q + m, q a 4-bit value, nibble order as Q4_0.
struct BlockQ4_1 {
  uint16_t d;  // fp16
  uint16_t m;  // fp16
  uint8_t qs[kQK / 2];
};

// x = d * (q - 16), q = nibble (order as Q4_0) | bit j of qh << 4.
struct BlockQ5_0 {
  uint16_t d;     // fp16
  uint8_t qh[4];  // little-endian uint32, bit j = fifth bit of element j
  uint8_t qs[kQK / 2];
};

// x = d * q, q signed 8-bit.
struct BlockQ8_0 {
  uint16_t d;  // fp16
  int8_t qs[kQK];
};

// 8 sub-blocks of 32: x = d * sc[j] * q - dmin * m[j], sc/m 6-bit packed in `scales` (see
// unpack_scale_min_k4), q 4-bit. Each 64-element chunk c uses qs[32c .. 32c+31]: low nibbles hold
// sub-block 2c, high nibbles sub-block 2c+1.
struct BlockQ4_K {
  uint16_t d;     // fp16, scale of the sub-block scales
  uint16_t dmin;  // fp16, scale of the sub-block mins
  uint8_t scales[12];
  uint8_t qs[kQK_K / 2];
};

// As Q4_K with a fifth bit: element l of sub-block j has bit j of qh[l] as its bit 4.
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};

// 16 sub-blocks of 16: x = d * scales[j] * (q - 32), q 6-bit. For each 128-element half h and l < 32:
// element 128h + l + 32i has low 4 bits from ql[64h + l + 32(i & 1)] (low nibble for i < 2, else high)
// and high 2 bits from qh[32h + l] >> 2i.
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;  // fp16
};

// Activation format of the K-quant dot products: x = d * q, bsums[j] = sum of qs[16j .. 16j+15].
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block.
inline void unpack_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

}  // namespace ferrum::quant
