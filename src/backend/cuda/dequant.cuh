// Device-side decoding of the stored weight types, in "chunks" of 8 weights: chunk c of a row holds
// w[0..3] at columns a0..a0+3 and w[4..7] at columns b0..b0+3. Every type has ceil(k / 8) chunks
// per row and consecutive chunks are consecutive bytes, so a warp reading chunks lane, lane + 32, ...
// reads whole blocks coalesced. The matmul, the embedding lookup and the F16 tile conversion all
// decode through these functions, so they agree on every weight bit for bit.
//
// The arithmetic uses explicit round-to-nearest intrinsics (no contraction left to the compiler),
// so every kernel instantiation computes the same value for a weight.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "core/dtype.h"
#include "quant/blocks.h"

namespace ferrum::cuda {

using quant::BlockQ4_0;
using quant::BlockQ4_1;
using quant::BlockQ4_K;
using quant::BlockQ5_0;
using quant::BlockQ5_K;
using quant::BlockQ6_K;
using quant::BlockQ8_0;

__device__ __forceinline__ float half_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float bf16_bits_to_float(uint32_t h) { return __uint_as_float(h << 16); }

// Unaligned-safe loads of 2-byte-aligned data (blocks of 18, 22, 34 and 210 bytes).
__device__ __forceinline__ uint16_t ld16(const uint8_t* p) {
  return __ldg(reinterpret_cast<const unsigned short*>(p));
}
__device__ __forceinline__ uint32_t ld32_a2(const uint8_t* p) {
  return static_cast<uint32_t>(ld16(p)) | (static_cast<uint32_t>(ld16(p + 2)) << 16);
}
__device__ __forceinline__ uint32_t ld32(const uint8_t* p) {
  return __ldg(reinterpret_cast<const unsigned int*>(p));
}

// Byte j (0..3) of a 32-bit word.
__device__ __forceinline__ int byte_of(uint32_t v, int j) { return static_cast<int>((v >> (8 * j)) & 0xFF); }

// The 6-bit scale and min of sub-block j of a Q4_K / Q5_K block (as unpack_scale_min_k4).
__device__ __forceinline__ void scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// scale_min_k4 on the 12 scale bytes held in registers (bytes 0-7 in lo, 8-11 in hi), so a
// lane-dependent sub-block index needs no local-memory array.
__device__ __forceinline__ void scale_min_k4_words(int j, uint64_t lo, uint32_t hi, int* sc, int* m) {
  auto byte = [&](int k) {
    return static_cast<int>(k < 8 ? (lo >> (8 * k)) & 0xFF : (hi >> (8 * (k - 8))) & 0xFF);
  };
  if (j < 4) {
    *sc = byte(j) & 63;
    *m = byte(j + 4) & 63;
  } else {
    *sc = (byte(j + 4) & 0xF) | ((byte(j - 4) >> 6) << 4);
    *m = (byte(j + 4) >> 4) | ((byte(j) >> 6) << 4);
  }
}

// Float rows (F32, F16, BF16): chunk c is columns 8c .. 8c+7; columns past k read as 0. `vec`: the
// row start and k allow 16-byte loads (k % 8 == 0 and an aligned row).
template <DType T>
struct FloatChunk {
  __device__ __forceinline__ static void load(const uint8_t* row, int64_t c, int64_t k, bool vec,
                                              float (&w)[8], int64_t* a0, int64_t* b0) {
    const int64_t base = 8 * c;
    *a0 = base;
    *b0 = base + 4;
    if constexpr (T == DType::F32) {
      const float* r = reinterpret_cast<const float*>(row) + base;
      if (vec) {
        const float4 u = __ldg(reinterpret_cast<const float4*>(r));
        const float4 v = __ldg(reinterpret_cast<const float4*>(r) + 1);
        w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w, w[4] = v.x, w[5] = v.y, w[6] = v.z, w[7] = v.w;
      } else {
        for (int i = 0; i < 8; ++i) w[i] = base + i < k ? __ldg(r + i) : 0.0f;
      }
    } else {
      const uint16_t* r = reinterpret_cast<const uint16_t*>(row) + base;
      uint16_t h[8];
      if (vec) {
        const uint4 u = __ldg(reinterpret_cast<const uint4*>(r));
        const uint32_t words[4] = {u.x, u.y, u.z, u.w};
        for (int i = 0; i < 4; ++i) {
          h[2 * i] = static_cast<uint16_t>(words[i] & 0xFFFF);
          h[2 * i + 1] = static_cast<uint16_t>(words[i] >> 16);
        }
      } else {
        for (int i = 0; i < 8; ++i)
          h[i] = base + i < k ? __ldg(reinterpret_cast<const unsigned short*>(r + i)) : 0;
      }
      for (int i = 0; i < 8; ++i)
        w[i] = T == DType::F16 ? half_bits_to_float(h[i]) : bf16_bits_to_float(h[i]);
    }
  }
};

// Q4_0 / Q4_1 / Q5_0: four chunks per 32-element block; chunk j holds bytes qs[4j .. 4j+3], whose low
// nibbles are elements 4j.. and high nibbles elements 16 + 4j...
template <DType T>
struct LegacyChunk {
  __device__ __forceinline__ static void load(const uint8_t* row, int64_t c, int64_t, bool, float (&w)[8],
                                              int64_t* a0, int64_t* b0) {
    const int64_t blk = c >> 2;
    const int j = static_cast<int>(c & 3);
    *a0 = 32 * blk + 4 * j;
    *b0 = *a0 + 16;
    if constexpr (T == DType::Q4_0) {
      const uint8_t* b = row + blk * sizeof(BlockQ4_0);
      const float d = half_bits_to_float(ld16(b));
      const uint32_t q = ld32_a2(b + 2 + 4 * j);
      for (int i = 0; i < 4; ++i) {
        w[i] = __fmul_rn(static_cast<float>((byte_of(q, i) & 0xF) - 8), d);
        w[4 + i] = __fmul_rn(static_cast<float>((byte_of(q, i) >> 4) - 8), d);
      }
    } else if constexpr (T == DType::Q4_1) {
      const uint8_t* b = row + blk * sizeof(BlockQ4_1);
      const uint32_t dm = ld32(b);
      const float d = half_bits_to_float(static_cast<uint16_t>(dm & 0xFFFF));
      const float m = half_bits_to_float(static_cast<uint16_t>(dm >> 16));
      const uint32_t q = ld32(b + 4 + 4 * j);
      for (int i = 0; i < 4; ++i) {
        w[i] = __fmaf_rn(static_cast<float>(byte_of(q, i) & 0xF), d, m);
        w[4 + i] = __fmaf_rn(static_cast<float>(byte_of(q, i) >> 4), d, m);
      }
    } else {
      static_assert(T == DType::Q5_0);
      const uint8_t* b = row + blk * sizeof(BlockQ5_0);
      const float d = half_bits_to_float(ld16(b));
      const uint32_t qh = ld32_a2(b + 2);
      const uint32_t q = ld32_a2(b + 6 + 4 * j);
      for (int i = 0; i < 4; ++i) {
        const int e = 4 * j + i;
        const int lo = (byte_of(q, i) & 0xF) | static_cast<int>(((qh >> e) & 1u) << 4);
        const int hi = (byte_of(q, i) >> 4) | static_cast<int>(((qh >> (e + 16)) & 1u) << 4);
        w[i] = __fmul_rn(static_cast<float>(lo - 16), d);
        w[4 + i] = __fmul_rn(static_cast<float>(hi - 16), d);
      }
    }
  }
};

// Q8_0: four chunks per block, chunk j = elements 8j .. 8j+7.
struct Q8_0Chunk {
  __device__ __forceinline__ static void load(const uint8_t* row, int64_t c, int64_t, bool, float (&w)[8],
                                              int64_t* a0, int64_t* b0) {
    const int64_t blk = c >> 2;
    const int j = static_cast<int>(c & 3);
    *a0 = 32 * blk + 8 * j;
    *b0 = *a0 + 4;
    const uint8_t* b = row + blk * sizeof(BlockQ8_0);
    const float d = half_bits_to_float(ld16(b));
    const uint32_t q0 = ld32_a2(b + 2 + 8 * j), q1 = ld32_a2(b + 6 + 8 * j);
    for (int i = 0; i < 4; ++i) {
      w[i] = __fmul_rn(static_cast<float>(static_cast<int8_t>(byte_of(q0, i))), d);
      w[4 + i] = __fmul_rn(static_cast<float>(static_cast<int8_t>(byte_of(q1, i))), d);
    }
  }
};

// Q4_K / Q5_K: 32 chunks per 256-element block; chunk cc holds qs bytes 4cc .. 4cc+3, which sit in
// 64-element group g = cc / 8 at offset l0 = 4 (cc % 8): low nibbles are sub-block 2g (elements
// 64g + l0 ..), high nibbles sub-block 2g + 1 (elements 64g + 32 + l0 ..).
template <DType T>
struct KChunk {
  __device__ __forceinline__ static void load(const uint8_t* row, int64_t c, int64_t, bool, float (&w)[8],
                                              int64_t* a0, int64_t* b0) {
    constexpr size_t kBytes = T == DType::Q4_K ? sizeof(BlockQ4_K) : sizeof(BlockQ5_K);
    constexpr int kQsOffset = T == DType::Q4_K ? 16 : 48;
    const int64_t blk = c >> 5;
    const int cc = static_cast<int>(c & 31);
    const int g = cc >> 3, l0 = 4 * (cc & 7);
    *a0 = 256 * blk + 64 * g + l0;
    *b0 = *a0 + 32;
    const uint8_t* b = row + blk * kBytes;
    const uint32_t dd = ld32(b);
    const float d = half_bits_to_float(static_cast<uint16_t>(dd & 0xFFFF));
    const float dmin = half_bits_to_float(static_cast<uint16_t>(dd >> 16));
    uint8_t scales[12];
    for (int i = 0; i < 3; ++i) {
      const uint32_t s = ld32(b + 4 + 4 * i);
      for (int j = 0; j < 4; ++j) scales[4 * i + j] = static_cast<uint8_t>(byte_of(s, j));
    }
    int sc1, m1, sc2, m2;
    scale_min_k4(2 * g, scales, &sc1, &m1);
    scale_min_k4(2 * g + 1, scales, &sc2, &m2);
    const float d1 = __fmul_rn(d, static_cast<float>(sc1)), n1 = -__fmul_rn(dmin, static_cast<float>(m1));
    const float d2 = __fmul_rn(d, static_cast<float>(sc2)), n2 = -__fmul_rn(dmin, static_cast<float>(m2));
    const uint32_t q = ld32(b + kQsOffset + 4 * cc);
    uint32_t qh = 0;
    if constexpr (T == DType::Q5_K) qh = ld32(b + 16 + l0);
    for (int i = 0; i < 4; ++i) {
      int lo = byte_of(q, i) & 0xF, hi = byte_of(q, i) >> 4;
      if constexpr (T == DType::Q5_K) {
        lo += ((byte_of(qh, i) >> (2 * g)) & 1) << 4;
        hi += ((byte_of(qh, i) >> (2 * g + 1)) & 1) << 4;
      }
      w[i] = __fmaf_rn(d1, static_cast<float>(lo), n1);
      w[4 + i] = __fmaf_rn(d2, static_cast<float>(hi), n2);
    }
  }
};

// Q6_K: 32 chunks per block. Chunk cc: half h = cc / 16, pair p = (cc / 8) % 2, l0 = 4 (cc % 8).
// Bytes ql[64h + 32p + l0 ..] and qh[32h + l0 ..] give element 128h + 32p + l0 + i from the low
// nibble and qh bits 2p, and element 128h + 32(p + 2) + l0 + i from the high nibble and qh bits 2p + 4.
struct Q6_KChunk {
  __device__ __forceinline__ static void load(const uint8_t* row, int64_t c, int64_t, bool, float (&w)[8],
                                              int64_t* a0, int64_t* b0) {
    const int64_t blk = c >> 5;
    const int cc = static_cast<int>(c & 31);
    const int h = cc >> 4, p = (cc >> 3) & 1, l0 = 4 * (cc & 7);
    *a0 = 256 * blk + 128 * h + 32 * p + l0;
    *b0 = *a0 + 64;
    const uint8_t* b = row + blk * sizeof(BlockQ6_K);
    const float d = half_bits_to_float(ld16(b + 208));
    const uint32_t ql = ld32_a2(b + 64 * h + 32 * p + l0);
    const uint32_t qh = ld32_a2(b + 128 + 32 * h + l0);
    const int is = l0 / 16 + 2 * p + 8 * h;
    const float ds1 = __fmul_rn(d, static_cast<float>(static_cast<int8_t>(b[192 + is])));
    const float ds2 = __fmul_rn(d, static_cast<float>(static_cast<int8_t>(b[192 + is + 4])));
    for (int i = 0; i < 4; ++i) {
      const int q1 = ((byte_of(ql, i) & 0xF) | (((byte_of(qh, i) >> (2 * p)) & 3) << 4)) - 32;
      const int q2 = ((byte_of(ql, i) >> 4) | (((byte_of(qh, i) >> (2 * p + 4)) & 3) << 4)) - 32;
      w[i] = __fmul_rn(ds1, static_cast<float>(q1));
      w[4 + i] = __fmul_rn(ds2, static_cast<float>(q2));
    }
  }
};

// Calls f(Chunk{}) with the chunk decoder of `type`; returns false for a type with none.
template <class F>
bool dispatch_chunk(DType type, F&& f) {
  switch (type) {
    case DType::F32:
      f(FloatChunk<DType::F32>{});
      return true;
    case DType::F16:
      f(FloatChunk<DType::F16>{});
      return true;
    case DType::BF16:
      f(FloatChunk<DType::BF16>{});
      return true;
    case DType::Q4_0:
      f(LegacyChunk<DType::Q4_0>{});
      return true;
    case DType::Q4_1:
      f(LegacyChunk<DType::Q4_1>{});
      return true;
    case DType::Q5_0:
      f(LegacyChunk<DType::Q5_0>{});
      return true;
    case DType::Q8_0:
      f(Q8_0Chunk{});
      return true;
    case DType::Q4_K:
      f(KChunk<DType::Q4_K>{});
      return true;
    case DType::Q5_K:
      f(KChunk<DType::Q5_K>{});
      return true;
    case DType::Q6_K:
      f(Q6_KChunk{});
      return true;
    default:
      return false;
  }
}

}  // namespace ferrum::cuda
