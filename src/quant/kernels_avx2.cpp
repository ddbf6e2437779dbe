// Fallback kernels for CPUs with AVX2 + FMA + F16C but no AVX-512: the same tiling and formats as
// the AVX-512 kernels, with 256-bit registers and vpmaddubsw + vpmaddwd for the integer dots (no
// VNNI). Activations are rounded by the scalar quantizers (act.h); their cost is O(k) per token.
#include <immintrin.h>

#include <cstring>

#include "core/half.h"
#include "quant/act.h"
#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/tiling.h"

#define FERRUM_UNROLL _Pragma("GCC unroll 16")

namespace ferrum::quant {
namespace {

inline float hsum(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}
inline float fp16(uint16_t h) { return _cvtsh_ss(h); }
inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// ---- F32 / F16 / BF16 -----------------------------------------------------------------------------

template <DType WT>
inline __m256 load_w8(const uint8_t* row, int64_t i) {
  if constexpr (WT == DType::F32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
  } else if constexpr (WT == DType::F16) {
    return _mm256_cvtph_ps(load128(row + 2 * i));
  } else {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(row + 2 * i)), 16));
  }
}

template <DType WT, int R, int T>
struct FloatTile {
  static void run(const TileArgs& a) {
    __m256 acc[R][T] = {};
    const float* x[T];
    FERRUM_UNROLL
    for (int t = 0; t < T; ++t) x[t] = reinterpret_cast<const float*>(a.act + t * a.act_row_bytes);
    const int64_t k8 = a.k / 8 * 8;
    for (int64_t i = 0; i < k8; i += 8) {
      __m256 wv[R];
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) wv[r] = load_w8<WT>(a.w + r * a.w_row_bytes, i);
      FERRUM_UNROLL
      for (int t = 0; t < T; ++t) {
        const __m256 xv = _mm256_loadu_ps(x[t] + i);
        FERRUM_UNROLL
        for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
      }
    }
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < R; ++r) {
        float s = hsum(acc[r][t]);
        if (k8 < a.k) {
          float wt[8];
          dequantize_row(WT, a.w + r * a.w_row_bytes + row_bytes(WT, k8), wt, a.k - k8);
          for (int64_t i = k8; i < a.k; ++i) s += wt[i - k8] * x[t][i];
        }
        a.y[t * a.ldy + r] = s;
      }
    }
  }
};

// ---- Q8_0 / Q4_0 / Q4_1 / Q5_0 (one 32-element block per register) --------------------------------

inline __m256i nibbles(const uint8_t* q) {
  const __m128i x = load128(q);
  return _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(x), _mm_srli_epi16(x, 4), 1),
                          _mm256_set1_epi8(0x0F));
}
// Byte j = 0x10 where bit j of the 32-bit word is set.
inline __m256i fifth_bits(const uint8_t* qh) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(h)), shuf);
  bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_and_si256(_mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1)), _mm256_set1_epi8(0x10));
}

enum class Legacy { Q8_0, Q4_0, Q4_1, Q5_0 };

template <Legacy L, int R, int T>
struct LegacyTile {
  using Block =
      std::conditional_t<L == Legacy::Q8_0, BlockQ8_0,
                         std::conditional_t<L == Legacy::Q4_0, BlockQ4_0,
                                            std::conditional_t<L == Legacy::Q4_1, BlockQ4_1, BlockQ5_0>>>;
  static __m256i codes(const Block& b) {
    if constexpr (L == Legacy::Q8_0) {
      return load256(b.qs);
    } else if constexpr (L == Legacy::Q5_0) {
      return _mm256_or_si256(nibbles(b.qs), fifth_bits(b.qh));
    } else {
      return nibbles(b.qs);
    }
  }
  static void run(const TileArgs& a) {
    constexpr int kShift = L == Legacy::Q4_0 ? 3 : 4;  // code offsets 8 (Q4_0) and 16 (Q5_0)
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[R][T] = {};
    const Block* wr[R];
    FERRUM_UNROLL
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const Block*>(a.w + r * a.w_row_bytes);
    const uint8_t* act[T];
    FERRUM_UNROLL
    for (int t = 0; t < T; ++t) act[t] = a.act + t * a.act_row_bytes;
    for (int64_t b = 0; b < a.k / 32; ++b) {
      __m256i wq[R];
      __m256 dw[R], mw[R];
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) {
        wq[r] = codes(wr[r][b]);
        dw[r] = _mm256_set1_ps(fp16(wr[r][b].d));
        if constexpr (L == Legacy::Q4_1) mw[r] = _mm256_set1_ps(fp16(wr[r][b].m));
      }
      FERRUM_UNROLL
      for (int t = 0; t < T; ++t) {
        const __m256i av = load256(ActQ8_0::qs(act[t]) + 32 * b);
        const __m256i nsum4 = load256(ActQ8_0::nsum4(act[t], a.k) + 8 * b);
        const __m256 da = _mm256_set1_ps(ActQ8_0::d(act[t], a.k)[b]);
        FERRUM_UNROLL
        for (int r = 0; r < R; ++r) {
          __m256i dot;
          if constexpr (L == Legacy::Q8_0) {
            // Signed x signed through vpmaddubsw: |w| times a with w's sign.
            dot = _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_sign_epi8(wq[r], wq[r]), _mm256_sign_epi8(av, wq[r])), ones);
          } else {
            dot = _mm256_madd_epi16(_mm256_maddubs_epi16(wq[r], av), ones);
            if constexpr (L != Legacy::Q4_1) dot = _mm256_add_epi32(dot, _mm256_slli_epi32(nsum4, kShift));
          }
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dw[r], da), acc[r][t]);
          if constexpr (L == Legacy::Q4_1)
            acc[r][t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(nsum4), _mm256_mul_ps(mw[r], da), acc[r][t]);
        }
      }
    }
    FERRUM_UNROLL
    for (int t = 0; t < T; ++t) {
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) a.y[t * a.ldy + r] = hsum(acc[r][t]);
    }
  }
};

// ---- Q4_K / Q5_K / Q6_K (one 32-element sub-block, or two 16-element ones, per register) ----------

inline void unpack_scales_mins(const uint8_t* packed, uint32_t out[4]) {
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  uint32_t u[3];
  std::memcpy(u, packed, 12);
  out[0] = u[0] & kLow6;
  out[1] = (u[2] & kLow4) | (((u[0] >> 6) & kLow2) << 4);
  out[2] = u[1] & kLow6;
  out[3] = ((u[2] >> 4) & kLow4) | (((u[1] >> 6) & kLow2) << 4);
}

template <bool kFiveBit, int R, int T>
struct K45Tile {
  using Block = std::conditional_t<kFiveBit, BlockQ5_K, BlockQ4_K>;
  static void run(const TileArgs& a) {
    __m256 acc[R][T] = {};
    const Block* wr[R];
    FERRUM_UNROLL
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const Block*>(a.w + r * a.w_row_bytes);
    const uint8_t* act[T];
    FERRUM_UNROLL
    for (int t = 0; t < T; ++t) act[t] = a.act + t * a.act_row_bytes;
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    for (int64_t sb = 0; sb < a.k / 256; ++sb) {
      uint8_t sc[R][8];
      __m128i mins[R];
      __m256 dr[R], mr[R];
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) {
        uint32_t u[4];
        unpack_scales_mins(wr[r][sb].scales, u);
        std::memcpy(sc[r], u, 8);
        mins[r] = _mm_cvtepu8_epi16(
            _mm_cvtsi64_si128(static_cast<int64_t>(u[2] | (static_cast<uint64_t>(u[3]) << 32))));
        dr[r] = _mm256_set1_ps(fp16(wr[r][sb].d));
        mr[r] = _mm256_set1_ps(fp16(wr[r][sb].dmin));
      }
      __m256i acci[R][T] = {};
      for (int j = 0; j < 8; ++j) {  // sub-block j: nibble j % 2 of qs[32 (j / 2) ..]
        __m256i wq[R], scv[R];
        FERRUM_UNROLL
        for (int r = 0; r < R; ++r) {
          const __m256i q = load256(wr[r][sb].qs + 32 * (j / 2));
          wq[r] = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(q, 4) : q, low4);
          if constexpr (kFiveBit) {
            const __m256i bit =
                _mm256_and_si256(load256(wr[r][sb].qh), _mm256_set1_epi8(static_cast<char>(1 << j)));
            const __m256i hi = j < 4 ? _mm256_sll_epi16(bit, _mm_cvtsi32_si128(4 - j))
                                     : _mm256_srl_epi16(bit, _mm_cvtsi32_si128(j - 4));
            wq[r] = _mm256_or_si256(wq[r], hi);
          }
          scv[r] = _mm256_set1_epi16(sc[r][j]);
        }
        FERRUM_UNROLL
        for (int t = 0; t < T; ++t) {
          const __m256i av = load256(ActQ8_K::qs(act[t]) + 256 * sb + 32 * j);
          FERRUM_UNROLL
          for (int r = 0; r < R; ++r)
            acci[r][t] =
                _mm256_add_epi32(acci[r][t], _mm256_madd_epi16(_mm256_maddubs_epi16(wq[r], av), scv[r]));
        }
      }
      FERRUM_UNROLL
      for (int t = 0; t < T; ++t) {
        const __m256 da = _mm256_set1_ps(ActQ8_K::d(act[t], a.k)[sb]);
        const int16_t* bs = ActQ8_K::bsums(act[t], a.k) + 16 * sb;
        const __m128i bs32 = _mm_hadd_epi16(load128(bs), load128(bs + 8));
        FERRUM_UNROLL
        for (int r = 0; r < R; ++r) {
          const __m256 minsum = _mm256_cvtepi32_ps(_mm256_zextsi128_si256(_mm_madd_epi16(mins[r], bs32)));
          const __m256 blk =
              _mm256_fmsub_ps(_mm256_cvtepi32_ps(acci[r][t]), dr[r], _mm256_mul_ps(minsum, mr[r]));
          acc[r][t] = _mm256_fmadd_ps(blk, da, acc[r][t]);
        }
      }
    }
    FERRUM_UNROLL
    for (int t = 0; t < T; ++t) {
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) a.y[t * a.ldy + r] = hsum(acc[r][t]);
    }
  }
};

template <int R, int T>
struct Q6_KTile {
  static void run(const TileArgs& a) {
    __m256 acc[R][T] = {};
    const BlockQ6_K* wr[R];
    FERRUM_UNROLL
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ6_K*>(a.w + r * a.w_row_bytes);
    const uint8_t* act[T];
    FERRUM_UNROLL
    for (int t = 0; t < T; ++t) act[t] = a.act + t * a.act_row_bytes;
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    for (int64_t sb = 0; sb < a.k / 256; ++sb) {
      __m256i scn[R];
      __m256 dr[R];
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(load128(wr[r][sb].scales));
        scn[r] = _mm256_mullo_epi16(sc16, _mm256_set1_epi16(-32));
        dr[r] = _mm256_set1_ps(fp16(wr[r][sb].d));
      }
      __m256i acci[R][T] = {};
      // Group g = 4h + i: elements 128h + 32i + l, sub-blocks 8h + 2i and 8h + 2i + 1.
      for (int g = 0; g < 8; ++g) {
        const int h = g / 4, i = g % 4;
        __m256i wq[R], scv[R];
        FERRUM_UNROLL
        for (int r = 0; r < R; ++r) {
          const BlockQ6_K& blk = wr[r][sb];
          const __m256i ql = load256(blk.ql + 64 * h + 32 * (i & 1));
          const __m256i qh = load256(blk.qh + 32 * h);
          const __m256i lo = _mm256_and_si256(i < 2 ? ql : _mm256_srli_epi16(ql, 4), low4);
          const __m256i hb = _mm256_and_si256(qh, _mm256_set1_epi8(static_cast<char>(3 << (2 * i))));
          const __m256i hi = 2 * i < 4 ? _mm256_sll_epi16(hb, _mm_cvtsi32_si128(4 - 2 * i))
                                       : _mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * i - 4));
          wq[r] = _mm256_or_si256(lo, hi);
          scv[r] = _mm256_set_m128i(_mm_set1_epi16(blk.scales[2 * g + 1]), _mm_set1_epi16(blk.scales[2 * g]));
        }
        FERRUM_UNROLL
        for (int t = 0; t < T; ++t) {
          const __m256i av = load256(ActQ8_K::qs(act[t]) + 256 * sb + 32 * g);
          FERRUM_UNROLL
          for (int r = 0; r < R; ++r)
            acci[r][t] =
                _mm256_add_epi32(acci[r][t], _mm256_madd_epi16(_mm256_maddubs_epi16(wq[r], av), scv[r]));
        }
      }
      FERRUM_UNROLL
      for (int t = 0; t < T; ++t) {
        const __m256 da = _mm256_set1_ps(ActQ8_K::d(act[t], a.k)[sb]);
        const __m256i bs = load256(ActQ8_K::bsums(act[t], a.k) + 16 * sb);
        FERRUM_UNROLL
        for (int r = 0; r < R; ++r) {
          const __m256i dot = _mm256_add_epi32(acci[r][t], _mm256_madd_epi16(bs, scn[r]));
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dr[r], da), acc[r][t]);
        }
      }
    }
    FERRUM_UNROLL
    for (int t = 0; t < T; ++t) {
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) a.y[t * a.ldy + r] = hsum(acc[r][t]);
    }
  }
};

template <int R, int T>
using F32Tile = FloatTile<DType::F32, R, T>;
template <int R, int T>
using F16Tile = FloatTile<DType::F16, R, T>;
template <int R, int T>
using BF16Tile = FloatTile<DType::BF16, R, T>;
template <int R, int T>
using Q8_0Tile = LegacyTile<Legacy::Q8_0, R, T>;
template <int R, int T>
using Q4_0Tile = LegacyTile<Legacy::Q4_0, R, T>;
template <int R, int T>
using Q4_1Tile = LegacyTile<Legacy::Q4_1, R, T>;
template <int R, int T>
using Q5_0Tile = LegacyTile<Legacy::Q5_0, R, T>;
template <int R, int T>
using Q4_KTile = K45Tile<false, R, T>;
template <int R, int T>
using Q5_KTile = K45Tile<true, R, T>;

using GemmFn = void (*)(const uint8_t*, size_t, const void*, size_t, int64_t, int64_t, float*, int64_t,
                        int64_t);

constexpr MatmulKernel make(const char* name, DType wt, DType act, GemmFn gemm) {
  MatmulKernel k;
  k.name = name;
  k.weight_type = wt;
  k.act_type = act;
  if (act == DType::Q8_0) k.quantize_act = quantize_act_q8_0_scalar;
  if (act == DType::Q8_K) k.quantize_act = quantize_act_q8_k_scalar;
  k.gemm = gemm;
  return k;
}

// 16 registers: 4 x 3 float tiles, 2 x 2 or 4 x 1 integer tiles.
constexpr MatmulKernel kF32 = make("f32 x f32 avx2", DType::F32, DType::F32, run_tiles<F32Tile, 4, 4, 3>);
constexpr MatmulKernel kF16 =
    make("f16 x f32 avx2 f16c", DType::F16, DType::F32, run_tiles<F16Tile, 4, 4, 3>);
constexpr MatmulKernel kBF16 = make("bf16 x f32 avx2", DType::BF16, DType::F32, run_tiles<BF16Tile, 4, 4, 3>);
constexpr MatmulKernel kQ8_0 =
    make("q8_0 x q8_0 avx2", DType::Q8_0, DType::Q8_0, run_tiles<Q8_0Tile, 4, 2, 2>);
constexpr MatmulKernel kQ4_0 =
    make("q4_0 x q8_0 avx2", DType::Q4_0, DType::Q8_0, run_tiles<Q4_0Tile, 4, 2, 2>);
constexpr MatmulKernel kQ4_1 =
    make("q4_1 x q8_0 avx2", DType::Q4_1, DType::Q8_0, run_tiles<Q4_1Tile, 4, 2, 2>);
constexpr MatmulKernel kQ5_0 =
    make("q5_0 x q8_0 avx2", DType::Q5_0, DType::Q8_0, run_tiles<Q5_0Tile, 4, 2, 2>);
constexpr MatmulKernel kQ4_K =
    make("q4_K x q8_K avx2", DType::Q4_K, DType::Q8_K, run_tiles<Q4_KTile, 2, 2, 2>);
constexpr MatmulKernel kQ5_K =
    make("q5_K x q8_K avx2", DType::Q5_K, DType::Q8_K, run_tiles<Q5_KTile, 2, 2, 2>);
constexpr MatmulKernel kQ6_K =
    make("q6_K x q8_K avx2", DType::Q6_K, DType::Q8_K, run_tiles<Q6_KTile, 2, 2, 2>);

}  // namespace

const MatmulKernel* avx2_kernel(DType weight_type) {
  switch (weight_type) {
    case DType::F32:
      return &kF32;
    case DType::F16:
      return &kF16;
    case DType::BF16:
      return &kBF16;
    case DType::Q8_0:
      return &kQ8_0;
    case DType::Q4_0:
      return &kQ4_0;
    case DType::Q4_1:
      return &kQ4_1;
    case DType::Q5_0:
      return &kQ5_0;
    case DType::Q4_K:
      return &kQ4_K;
    case DType::Q5_K:
      return &kQ5_K;
    case DType::Q6_K:
      return &kQ6_K;
    default:
      return nullptr;
  }
}

}  // namespace ferrum::quant
