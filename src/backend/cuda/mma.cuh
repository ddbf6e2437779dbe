// Pieces shared by the tensor-core kernels (gemv_kquant.cu and gemv_int8.cu for small steps,
// batch_kquant.cu for batched ones, attention.cu): the MMAs, the f16 code builders and the
// staged-activation layout.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "backend/cuda/dequant.cuh"
#include "backend/cuda/kernels.h"

namespace ferrum::cuda {

// Per staged token: 256 columns of x as f16 hi then lo halves, each 64-column group padded to 72 halves
// so the lanes of a fragment read different banks, then the 8 sub-block sums (f16 hi, lo) that Q4_K
// needs.
constexpr int kGroupHalves = 72;
constexpr int kPartHalves = 4 * kGroupHalves;
constexpr int kSumsAt = 2 * kPartHalves;
constexpr int kTokenHalves = kSumsAt + 16;

__device__ __forceinline__ uint32_t half2_bits(__half2 h) { return *reinterpret_cast<const uint32_t*>(&h); }
__device__ __forceinline__ __half2 bits_half2(uint32_t u) { return *reinterpret_cast<const __half2*>(&u); }

// d += A * B for one m16n8k16 tile (fragment layouts as in the PTX ISA: lane = 4 g + c holds A rows g
// and g + 8 at k = 2c, 2c + 1, 2c + 8, 2c + 9, B column g at the same k, D rows g, g + 8 at columns 2c, 2c +
// 1).
__device__ __forceinline__ void mma_f16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                        uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// mma_f16 for bfloat16 operands.
__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// d += A * B for one m16n8k8 TF32 tile (lane = 4 g + c holds A (g, c), (g + 8, c), (g, c + 4),
// (g + 8, c + 4); B (c, g), (c + 4, g); D (g, 2c), (g, 2c + 1), (g + 8, 2c), (g + 8, 2c + 1)).
__device__ __forceinline__ void mma_tf32(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// d += A * B for one m16n8k32 tile of int8 codes (fragment layouts as in the PTX ISA: lane = 4 g + c
// holds A rows g, g + 8 at k = 4c .. 4c + 3 (a0, a1) and 16 + 4c .. 16 + 4c + 3 (a2, a3), B column g at
// the same k (b0, b1), D as mma_f16).
__device__ __forceinline__ void mma_s8(int (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                       uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// d += A * B for one m16n8k16 tile of int8 codes (lane = 4 g + c holds A rows g, g + 8 at k = 4c .. 4c + 3
// (a0, a1), B column g at the same k (b0), D as mma_f16).
__device__ __forceinline__ void mma_s8_k16(int (&d)[4], uint32_t a0, uint32_t a1, uint32_t b0) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a0), "r"(a1), "r"(b0));
}

// Four activations as the 16-bit (f16, or bf16 with kBf16) hi halves {0, 1}, {2, 3} and the lo halves of
// the remainders (the B fragment of one MMA for one lane).
struct XFrag {
  uint32_t hi[2], lo[2];
};
template <bool kBf16 = false>
__device__ __forceinline__ XFrag x_frag(float4 v) {
  using H2 = std::conditional_t<kBf16, __nv_bfloat162, __half2>;
  const auto pack = [](float a, float b) {
    H2 h;
    if constexpr (kBf16)
      h = __floats2bfloat162_rn(a, b);
    else
      h = __floats2half2_rn(a, b);
    return h;
  };
  const auto value = [](H2 h) {
    if constexpr (kBf16)
      return __bfloat1622float2(h);
    else
      return __half22float2(h);
  };
  const auto bits = [](H2 h) { return *reinterpret_cast<const uint32_t*>(&h); };
  const H2 h0 = pack(v.x, v.y), h1 = pack(v.z, v.w);
  const float2 b0 = value(h0), b1 = value(h1);
  return XFrag{{bits(h0), bits(h1)},
               {bits(pack(v.x - b0.x, v.y - b0.y)), bits(pack(v.z - b1.x, v.w - b1.y))}};
}

// Stages 256 columns of one token (xr) at `tok`: lane L splits columns 8L .. 8L + 7 into hi = round(x)
// and lo = round(x - hi); with kSums the four lanes of a 32-column sub-block add their sums in a
// fixed butterfly.
template <bool kSums>
__device__ __forceinline__ void stage_token(const float* xr, int lane, __half* tok) {
  const float4 u = __ldg(reinterpret_cast<const float4*>(xr + 8 * lane));
  const float4 v = __ldg(reinterpret_cast<const float4*>(xr + 8 * lane + 4));
  const XFrag a = x_frag(u), b = x_frag(v);
  const int at = kGroupHalves * (lane >> 3) + 8 * (lane & 7);
  *reinterpret_cast<uint4*>(tok + at) = make_uint4(a.hi[0], a.hi[1], b.hi[0], b.hi[1]);
  *reinterpret_cast<uint4*>(tok + kPartHalves + at) = make_uint4(a.lo[0], a.lo[1], b.lo[0], b.lo[1]);
  if (!kSums) return;
  float s = ((u.x + u.y) + (u.z + u.w)) + ((v.x + v.y) + (v.z + v.w));
  s += __shfl_xor_sync(0xffffffffu, s, 1);
  s += __shfl_xor_sync(0xffffffffu, s, 2);
  if ((lane & 3) == 0) {
    const __half sh = __float2half_rn(s);
    tok[kSumsAt + (lane >> 2)] = sh;
    tok[kSumsAt + 8 + (lane >> 2)] = __float2half_rn(s - __half2float(sh));
  }
}

// Two bytes of `word` (selected by `sel`, 0x4140 for bytes 0, 1 and 0x4342 for bytes 2, 3) under the
// exponent byte 0x64 are the halves 1024 + byte; subtracting `bias2` (a half2) leaves the code.
__device__ __forceinline__ uint32_t biased_pair(uint32_t word, uint32_t sel, uint32_t bias2) {
  return half2_bits(__hsub2(bits_half2(__byte_perm(word, 0x6464, sel)), bits_half2(bias2)));
}

// biased_pair's bias for Q8_0 codes stored XOR 0x80 (q + 128): 1152 = 1024 + 128 in both halves.
constexpr uint32_t kQ8_0Bias = 0x64806480u;

// Two Q4_K weights (bytes of `nibbles` selected by `sel`) times the sub-block scale, as f16 subnormals.
__device__ __forceinline__ uint32_t q4_pair(uint32_t nibbles, uint32_t sel, __half2 sc) {
  return half2_bits(__hmul2(bits_half2(__byte_perm(nibbles, 0, sel)), sc));
}

// The weights of rows rows[0] and rows[1] that lane column group c reads for one 256-column step.
struct Q4KStep {
  uint4 head[2], q[2][2];  // bytes 0-15 of the block; quant bytes 32c .. 32c + 31
  __device__ __forceinline__ void load(const WMat& w, const int64_t (&rows)[2], int64_t st, int c) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint8_t* b = w.p + rows[i] * w.row_bytes + st * sizeof(BlockQ4_K);
      head[i] = __ldg(reinterpret_cast<const uint4*>(b));
      q[i][0] = __ldg(reinterpret_cast<const uint4*>(b + 16 + 32 * c));
      q[i][1] = __ldg(reinterpret_cast<const uint4*>(b + 32 + 32 * c));
    }
  }
};

// One row's Q6_K block b as lane column group c reads it (the m16n8k16 fragment layout of the Q6_K kinds
// of batch_kquant.cu and gemv_int8.cu; sub-block s: half h = s / 8, quarter j = (s % 8) / 2, parity
// p = s % 2): ql[4h + 2 (j % 2) + p] and qh[2h + p] hold the bits of columns 16s + 4c .. + 3, sc the 16
// int8 scales. Blocks (210 bytes) are 2-byte aligned, so loads are 16-bit.
__device__ __forceinline__ void load_q6k_words(const uint8_t* b, int c, uint32_t (&ql)[8], uint32_t (&qh)[4],
                                               uint32_t (&sc)[4]) {
#pragma unroll
  for (int k = 0; k < 8; ++k) ql[k] = ld32_a2(b + 64 * (k >> 2) + 32 * ((k >> 1) & 1) + 16 * (k & 1) + 4 * c);
#pragma unroll
  for (int k = 0; k < 4; ++k) qh[k] = ld32_a2(b + 128 + 32 * (k >> 1) + 16 * (k & 1) + 4 * c);
#pragma unroll
  for (int k = 0; k < 4; ++k) sc[k] = ld32_a2(b + 192 + 4 * k);
}

// Eight Q8_0 blocks: quant bytes 4c .. 4c + 3 and 16 + 4c .. + 3 of each. Rows must be 16-byte aligned,
// so a step (8 x 34 bytes) is, and odd blocks' quants are 4-byte aligned (even ones 2-byte).
struct Q8_0Step {
  uint32_t q[2][8][2];  // codes XOR 0x80 (q + 128)
  float d[2][8];
  __device__ __forceinline__ void load(const WMat& w, const int64_t (&rows)[2], int64_t st, int c) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint8_t* step = w.p + rows[i] * w.row_bytes + st * 8 * sizeof(BlockQ8_0);
#pragma unroll
      for (int b = 0; b < 8; ++b) {
        const uint8_t* blk = step + b * sizeof(BlockQ8_0);
        d[i][b] = half_bits_to_float(ld16(blk));
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const uint8_t* p = blk + 2 + 16 * h + 4 * c;
          q[i][b][h] = (b & 1 ? ld32(p) : ld32_a2(p)) ^ 0x80808080u;
        }
      }
    }
  }
};

}  // namespace ferrum::cuda
