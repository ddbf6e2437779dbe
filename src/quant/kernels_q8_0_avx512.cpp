// Q8_0 / Q4_0 / Q4_1 / Q5_0 weights x Q8_0-rounded activations with AVX-512 VNNI.
//
// Two 32-element blocks fill one 512-bit register. Weight codes are made unsigned (Q8_0: +128 by
// flipping the sign bit; the 4/5-bit codes already are) so one vpdpbusd multiplies them with the
// signed activations; the offset (128, 8 or 16 times the activation sum) enters as the initial
// accumulator, precomputed per 4 activations (act.h). Each int32 lane then holds part of one block's
// exact integer dot, which is converted and scaled by d_w * d_a in float lanes (lanes 0-7: first
// block, 8-15: second).
#include <immintrin.h>

#include <cstring>

#include "quant/act.h"
#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/simd_avx512.h"
#include "quant/tiling.h"

namespace ferrum::quant {
namespace {

using avx512::fp16;
using avx512::pair_lanes_f32;
using avx512::pair_lanes_fp16;

void quantize_act_q8_0_avx512(const float* x, void* qx, int64_t k) {
  int8_t* qs = ActQ8_0::qs(qx);
  float* d = ActQ8_0::d(qx, k);
  const __m512 sign = _mm512_set1_ps(-0.0f);
  for (int64_t b = 0; b < k / 32; ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + 32 * b);
    const __m512 v1 = _mm512_loadu_ps(x + 32 * b + 16);
    const float amax =
        _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
    d[b] = _cvtsh_ss(_cvtss_sh(amax / 127.f, _MM_FROUND_TO_NEAREST_INT));
    const __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
    // Default MXCSR rounding: to nearest, ties to even (llama.cpp's _mm256_round_ps).
    const __m128i q0 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, id)));
    const __m128i q1 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, id)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + 32 * b), _mm256_set_m128i(q1, q0));
  }
  // Sums of 4 consecutive codes, negated: vpdpbusd of ones with the codes.
  int32_t* nsum4 = ActQ8_0::nsum4(qx, k);
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t i = 0; i < k; i += 32) {
    const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones,
                                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(nsum4 + i / 4),
                        _mm256_sub_epi32(_mm256_setzero_si256(), s));
  }
}

// Per weight type: how to load two blocks (codes as unsigned bytes, scales as float lanes) or one
// (upper half zero), and the code offset as a shift of the activation sums.
struct Q8_0W {
  using Block = BlockQ8_0;
  static constexpr int kOffsetShift = 7;  // codes + 128
  static __m512i codes2(const Block* b) {
    const __m512i q = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[0].qs))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[1].qs)), 1);
    return _mm512_xor_si512(q, _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  static __m512i codes1(const Block* b) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[0].qs));
    return _mm512_zextsi256_si512(_mm256_xor_si256(q, _mm256_set1_epi8(static_cast<char>(0x80))));
  }
};

// 16 bytes of nibbles -> 32 codes in element order (low nibbles first), for two blocks at once.
inline __m512i nibbles2(const uint8_t* q0, const uint8_t* q1) {
  const __m256i y =
      _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q0))),
                              _mm_loadu_si128(reinterpret_cast<const __m128i*>(q1)), 1);
  const __m256i y4 = _mm256_srli_epi16(y, 4);
  const __m512i z = _mm512_permutex2var_epi64(
      _mm512_castsi256_si512(y), _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0), _mm512_castsi256_si512(y4));
  return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
}
inline __m512i nibbles1(const uint8_t* q0) {
  const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q0));
  const __m256i y = _mm256_inserti128_si256(_mm256_castsi128_si256(x), _mm_srli_epi16(x, 4), 1);
  return _mm512_zextsi256_si512(_mm256_and_si256(y, _mm256_set1_epi8(0x0F)));
}

struct Q4_0W {
  using Block = BlockQ4_0;
  static constexpr int kOffsetShift = 3;  // codes are value + 8
  static __m512i codes2(const Block* b) { return nibbles2(b[0].qs, b[1].qs); }
  static __m512i codes1(const Block* b) { return nibbles1(b[0].qs); }
};

struct Q5_0W {
  using Block = BlockQ5_0;
  static constexpr int kOffsetShift = 4;  // codes are value + 16
  static uint64_t high_bits(const Block& b) {
    uint32_t h;
    std::memcpy(&h, b.qh, 4);
    return h;
  }
  static __m512i codes2(const Block* b) {
    const __mmask64 hi = _cvtu64_mask64(high_bits(b[0]) | (high_bits(b[1]) << 32));
    const __m512i lo = nibbles2(b[0].qs, b[1].qs);
    return _mm512_mask_add_epi8(lo, hi, lo, _mm512_set1_epi8(16));
  }
  static __m512i codes1(const Block* b) {
    const __mmask64 hi = _cvtu64_mask64(high_bits(b[0]));
    const __m512i lo = nibbles1(b[0].qs);
    return _mm512_mask_add_epi8(lo, hi, lo, _mm512_set1_epi8(16));
  }
};

// Q8_0, Q4_0, Q5_0: acc += (dot + offset correction) * d_w * d_a.
template <class W, int R, int T>
struct SymTile {
  using Block = typename W::Block;
  static void run(const TileArgs& a) {
    const int64_t nb = a.k / 32;
    __m512 acc[R][T] = {};
    const Block* wr[R];
    FERRUM_UNROLL
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const Block*>(a.w + r * a.w_row_bytes);
    const int8_t* aq[T];
    const int32_t* ans[T];
    const float* ad[T];
    FERRUM_UNROLL
    for (int t = 0; t < T; ++t) {
      const uint8_t* row = a.act + t * a.act_row_bytes;
      aq[t] = ActQ8_0::qs(row);
      ans[t] = ActQ8_0::nsum4(row, a.k);
      ad[t] = ActQ8_0::d(row, a.k);
    }
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
      __m512i wq[R];
      __m512 ws[R];
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) {
        wq[r] = W::codes2(wr[r] + b);
        ws[r] = pair_lanes_fp16(wr[r][b].d, wr[r][b + 1].d);
      }
      FERRUM_UNROLL
      for (int t = 0; t < T; ++t) {
        const __m512i av = _mm512_loadu_si512(aq[t] + 32 * b);
        const __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(ans[t] + 8 * b), W::kOffsetShift);
        const __m512 da = pair_lanes_f32(ad[t] + b);
        FERRUM_UNROLL
        for (int r = 0; r < R; ++r) {
          const __m512i dot = _mm512_dpbusd_epi32(corr, wq[r], av);
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(ws[r], da), acc[r][t]);
        }
      }
    }
    if (b < nb) {
      __m512i wq[R];
      __m512 ws[R];
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) {
        wq[r] = W::codes1(wr[r] + b);
        ws[r] = _mm512_set1_ps(fp16(wr[r][b].d));
      }
      FERRUM_UNROLL
      for (int t = 0; t < T; ++t) {
        const __m512i av =
            _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq[t] + 32 * b)));
        const __m512i corr = _mm512_zextsi256_si512(_mm256_slli_epi32(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ans[t] + 8 * b)), W::kOffsetShift));
        const __m512 da = _mm512_set1_ps(ad[t][b]);
        FERRUM_UNROLL
        for (int r = 0; r < R; ++r) {
          const __m512i dot = _mm512_dpbusd_epi32(corr, wq[r], av);
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(ws[r], da), acc[r][t]);
        }
      }
    }
    FERRUM_UNROLL
    for (int t = 0; t < T; ++t) {
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) a.y[t * a.ldy + r] = avx512::hsum(acc[r][t]);
    }
  }
};

// Q4_1: x = d * q + m, so acc += dot * d_w * d_a + (activation sum) * m * d_a.
template <int R, int T>
struct Q4_1Tile {
  static void run(const TileArgs& a) {
    const int64_t nb = a.k / 32;
    __m512 acc[R][T] = {};
    const BlockQ4_1* wr[R];
    FERRUM_UNROLL
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ4_1*>(a.w + r * a.w_row_bytes);
    const int8_t* aq[T];
    const int32_t* ans[T];
    const float* ad[T];
    FERRUM_UNROLL
    for (int t = 0; t < T; ++t) {
      const uint8_t* row = a.act + t * a.act_row_bytes;
      aq[t] = ActQ8_0::qs(row);
      ans[t] = ActQ8_0::nsum4(row, a.k);
      ad[t] = ActQ8_0::d(row, a.k);
    }
    for (int64_t b = 0; b < nb; b += 2) {
      const bool two = b + 2 <= nb;
      __m512i wq[R];
      __m512 ws[R], wm[R];
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) {
        const BlockQ4_1* blk = wr[r] + b;
        wq[r] = two ? nibbles2(blk[0].qs, blk[1].qs) : nibbles1(blk[0].qs);
        ws[r] = two ? pair_lanes_fp16(blk[0].d, blk[1].d) : _mm512_set1_ps(fp16(blk[0].d));
        wm[r] = two ? pair_lanes_fp16(blk[0].m, blk[1].m) : _mm512_set1_ps(fp16(blk[0].m));
      }
      FERRUM_UNROLL
      for (int t = 0; t < T; ++t) {
        const __m512i av = two ? _mm512_loadu_si512(aq[t] + 32 * b)
                               : _mm512_zextsi256_si512(
                                     _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq[t] + 32 * b)));
        const __m512 nsum = _mm512_cvtepi32_ps(two ? _mm512_loadu_si512(ans[t] + 8 * b)
                                                   : _mm512_zextsi256_si512(_mm256_loadu_si256(
                                                         reinterpret_cast<const __m256i*>(ans[t] + 8 * b))));
        const __m512 da = two ? pair_lanes_f32(ad[t] + b) : _mm512_set1_ps(ad[t][b]);
        FERRUM_UNROLL
        for (int r = 0; r < R; ++r) {
          const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[r], av);
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(ws[r], da), acc[r][t]);
          acc[r][t] = _mm512_fnmadd_ps(nsum, _mm512_mul_ps(wm[r], da), acc[r][t]);
        }
      }
    }
    FERRUM_UNROLL
    for (int t = 0; t < T; ++t) {
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) a.y[t * a.ldy + r] = avx512::hsum(acc[r][t]);
    }
  }
};

template <int R, int T>
using Q8_0Tile = SymTile<Q8_0W, R, T>;
template <int R, int T>
using Q4_0Tile = SymTile<Q4_0W, R, T>;
template <int R, int T>
using Q5_0Tile = SymTile<Q5_0W, R, T>;

constexpr MatmulKernel make(const char* name, DType wt,
                            void (*gemm)(const uint8_t*, size_t, const void*, size_t, int64_t, int64_t,
                                         float*, int64_t, int64_t)) {
  MatmulKernel k;
  k.name = name;
  k.weight_type = wt;
  k.act_type = DType::Q8_0;
  k.quantize_act = quantize_act_q8_0_avx512;
  k.gemm = gemm;
  return k;
}

// Decode: one row at a time (one linear stream, see kernels_k_avx512.cpp). Prefill: 4 x 4 tiles.
constexpr MatmulKernel kQ8_0 = make("q8_0 x q8_0 avx512vnni", DType::Q8_0, run_tiles<Q8_0Tile, 1, 4, 4>);
constexpr MatmulKernel kQ4_0 = make("q4_0 x q8_0 avx512vnni", DType::Q4_0, run_tiles<Q4_0Tile, 1, 4, 4>);
constexpr MatmulKernel kQ4_1 = make("q4_1 x q8_0 avx512vnni", DType::Q4_1, run_tiles<Q4_1Tile, 1, 4, 3>);
constexpr MatmulKernel kQ5_0 = make("q5_0 x q8_0 avx512vnni", DType::Q5_0, run_tiles<Q5_0Tile, 1, 4, 4>);

}  // namespace

const MatmulKernel* avx512_q8_0_kernel(DType weight_type) {
  switch (weight_type) {
    case DType::Q8_0:
      return &kQ8_0;
    case DType::Q4_0:
      return &kQ4_0;
    case DType::Q4_1:
      return &kQ4_1;
    case DType::Q5_0:
      return &kQ5_0;
    default:
      return nullptr;
  }
}

}  // namespace ferrum::quant
