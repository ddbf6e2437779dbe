// Q4_K / Q5_K / Q6_K weights x Q8_K-rounded activations with AVX-512 (BW + VNNI).
//
// Per 128 elements and (row, token): two vpdpbusd multiply the unsigned weight codes of two 64-element
// chunks with the signed activations into sums of 4 products (at most 4 * 63 * 127 < 2^15), vpackssdw
// packs both to int16 lanes without loss, and one vpdpwssd multiplies them by their sub-block scales
// and accumulates into int32 lanes, exactly: 3 multiplies per 128 elements where vpmaddubsw + vpdpwssd
// per chunk took 4, and prefill is bound by the multiply ports. Per super-block the lanes are scaled by
// d_w * d_a in float; the code offsets (Q4_K/Q5_K mins, Q6_K's -32) are applied through the activation
// block sums (bsums).
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

void quantize_act_q8_k_avx512(const float* x, void* qx, int64_t k) {
  int8_t* qs = ActQ8_K::qs(qx);
  float* d = ActQ8_K::d(qx, k);
  int16_t* bsums = ActQ8_K::bsums(qx, k);
  float* dsums = ActQ8_K::dsums(qx, k);
  const __m512 sign = _mm512_set1_ps(-0.0f);
  for (int64_t b = 0; b < k / 256; ++b) {
    const float* xb = x + 256 * b;
    __m512 m = _mm512_setzero_ps();
    for (int i = 0; i < 16; ++i) m = _mm512_max_ps(m, _mm512_andnot_ps(sign, _mm512_loadu_ps(xb + 16 * i)));
    const float amax = _mm512_reduce_max_ps(m);
    if (amax == 0.0f) {
      d[b] = 0;
      std::memset(qs + 256 * b, 0, 256);
      std::memset(bsums + 16 * b, 0, 16 * sizeof(int16_t));
      std::memset(dsums + 8 * b, 0, 8 * sizeof(float));
      continue;
    }
    // The first element of largest magnitude, with its sign, sets the scale (as in llama.cpp).
    float max = 0;
    for (int i = 0; i < 16; ++i) {
      const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_andnot_ps(sign, _mm512_loadu_ps(xb + 16 * i)),
                                               _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (hit != 0) {
        max = xb[16 * i + __builtin_ctz(hit)];
        break;
      }
    }
    const float iscale = -127.f / max;
    const __m512 s = _mm512_set1_ps(iscale);
    for (int i = 0; i < 16; ++i) {
      __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * i), s));
      q = _mm512_min_epi32(q, _mm512_set1_epi32(127));
      bsums[16 * b + i] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 256 * b + 16 * i), _mm512_cvtsepi32_epi8(q));
    }
    d[b] = 1 / iscale;
    const __m256i pair_sums = _mm256_madd_epi16(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bsums + 16 * b)), _mm256_set1_epi16(1));
    _mm256_storeu_ps(dsums + 8 * b, _mm256_mul_ps(_mm256_set1_ps(d[b]), _mm256_cvtepi32_ps(pair_sums)));
  }
}

// Small tiles split each integer accumulator into two chains so consecutive vpdpwssd do not wait
// on each other.
template <int R, int T>
constexpr int kChainsFor = R* T < 4 ? 2 : 1;
template <int N>
inline __m512i sum_chains(const __m512i (&v)[N]) {
  if constexpr (N == 1) {
    return v[0];
  } else {
    return _mm512_add_epi32(v[0], v[1]);
  }
}

// Pointers to the T activation rows of a tile.
template <int T>
struct ActRows {
  const int8_t* qs[T];
  const float* d[T];
  const int16_t* bsums[T];
  const float* dsums[T];
  ActRows(const TileArgs& a) {
    FERRUM_UNROLL
    for (int t = 0; t < T; ++t) {
      const uint8_t* row = a.act + t * a.act_row_bytes;
      qs[t] = ActQ8_K::qs(row);
      d[t] = ActQ8_K::d(row, a.k);
      bsums[t] = ActQ8_K::bsums(row, a.k);
      dsums[t] = ActQ8_K::dsums(row, a.k);
    }
  }
};

inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }

// acc + the scaled dot products of two chunks (codes w0, w1 against activations a0, a1); `scales` holds
// the sub-block scale of every int16 lane of the packed chunk sums (see PairScaleIndex).
inline __m512i dot_chunk_pair(__m512i acc, __m512i w0, __m512i a0, __m512i w1, __m512i a1, __m512i scales) {
  const __m512i z = _mm512_setzero_si512();
  return _mm512_dpwssd_epi32(
      acc, _mm512_packs_epi32(_mm512_dpbusd_epi32(z, w0, a0), _mm512_dpbusd_epi32(z, w1, a1)), scales);
}

// For chunk pair p (chunks 2p, 2p+1) of a super-block with kSubs sub-blocks per 64-element chunk: the
// sub-block of each int16 lane j of the packed sums. vpackssdw takes 128-bit lane L = j / 8 of the
// first chunk into lanes j % 8 < 4 and of the second into the rest; 128-bit lane L of a chunk lies in
// its sub-block L * kSubs / 4.
template <int kSubs>
struct PairScaleIndex {
  alignas(64) int16_t idx[2][32];
  constexpr PairScaleIndex() : idx{} {
    for (int p = 0; p < 2; ++p)
      for (int j = 0; j < 32; ++j)
        idx[p][j] = static_cast<int16_t>((2 * p + (j % 8 >= 4)) * kSubs + (j / 8) * kSubs / 4);
  }
};
template <int kSubs>
constexpr PairScaleIndex<kSubs> kPairScaleIndex{};
inline __m512i broadcast256(const uint8_t* p) {
  return _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// The 8 six-bit scales and mins of a Q4_K/Q5_K block as bytes: sc[0..7] then m[0..7]
// (unpack_scale_min_k4 for all j at once).
inline void unpack_scales_mins(const uint8_t* packed, uint32_t out[4]) {
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  uint32_t u[3];
  std::memcpy(u, packed, 12);
  out[0] = u[0] & kLow6;
  out[1] = (u[2] & kLow4) | (((u[0] >> 6) & kLow2) << 4);
  out[2] = u[1] & kLow6;
  out[3] = ((u[2] >> 4) & kLow4) | (((u[1] >> 6) & kLow2) << 4);
}

// Weight rows in pairs (r, r + 1) share one float accumulator: lanes 0-7 belong to row r and lanes
// 8-15 to row r + 1, which halves the float work per super-block. The last row of an odd tile (every
// decode tile has one row) folds its lanes onto themselves and uses lanes 0-7: a row's arithmetic is
// the same op for op whatever the tile, so results do not depend on how many tokens or rows share a
// call (batch invariance; the integer folds are exact).
template <int R>
constexpr int kRowPairs = (R + 1) / 2;

// Lanes 0-7: the 16 integer lanes of row a folded in half; lanes 8-15: those of row b.
inline __m512i fold_rows(__m512i a, __m512i b) {
  return _mm512_add_epi32(_mm512_shuffle_i64x2(a, b, 0x44), _mm512_shuffle_i64x2(a, b, 0xEE));
}
// Lanes 0-7 as fold_rows(a, *) gives them.
inline __m512i fold_row(__m512i a) { return _mm512_add_epi32(a, _mm512_shuffle_i64x2(a, a, 0x4E)); }

// The integer sums of pair i for token t.
template <int R, int T, int C>
inline __m512i folded_pair(const __m512i (&acci)[R][T][C], int i, int t) {
  return 2 * i + 1 < R ? fold_rows(sum_chains(acci[2 * i][t]), sum_chains(acci[2 * i + 1][t]))
                       : fold_row(sum_chains(acci[2 * i][t]));
}

// Per-row float factor f[r] laid out as the pair accumulators expect.
template <int R>
inline __m512 pair_factor(const float* f, int i) {
  return 2 * i + 1 < R ? _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(f[2 * i]), _mm512_set1_ps(f[2 * i + 1]))
                       : _mm512_set1_ps(f[2 * i]);
}

// Per-row 8-lane vectors v[r] laid out as the pair accumulators expect (zeros beside a lone row).
template <int R>
inline __m512 pair_halves(const __m256* v, int i) {
  return 2 * i + 1 < R ? _mm512_insertf32x8(_mm512_castps256_ps512(v[2 * i]), v[2 * i + 1], 1)
                       : _mm512_zextps256_ps512(v[2 * i]);
}
template <int R>
inline __m512i pair_halves(const __m256i* v, int i) {
  return 2 * i + 1 < R ? _mm512_inserti64x4(_mm512_castsi256_si512(v[2 * i]), v[2 * i + 1], 1)
                       : _mm512_zextsi256_si512(v[2 * i]);
}

template <int R, int T>
inline void store_row_pairs(const __m512 (&acc)[kRowPairs<R>][T], const TileArgs& a) {
  FERRUM_UNROLL
  for (int t = 0; t < T; ++t) {
    FERRUM_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m512 v = acc[r / 2][t];
      a.y[t * a.ldy + r] =
          avx512::hsum256(r % 2 == 0 ? _mm512_castps512_ps256(v) : _mm512_extractf32x8_ps(v, 1));
    }
  }
}

// Q4_K and Q5_K (kFiveBit): 4 chunks of 64 elements; chunk c = sub-blocks 2c (low nibbles of
// qs[32c..32c+31]) and 2c+1 (high nibbles), with bits 2c / 2c+1 of qh as fifth bits.
template <bool kFiveBit, int R, int T>
struct K45Tile {
  using Block = std::conditional_t<kFiveBit, BlockQ5_K, BlockQ4_K>;
  static constexpr int kChains = kChainsFor<R, T>;
  static void run(const TileArgs& a) {
    const ActRows<T> act(a);
    const Block* wr[R];
    FERRUM_UNROLL
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const Block*>(a.w + r * a.w_row_bytes);
    constexpr int kPairs = kRowPairs<R>;
    __m512 acc[kPairs][T] = {};
    // Nibble c of a 32-byte chunk broadcast to both halves: shift the upper half's words by 4.
    const __m512i shift04 = _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0x0004000400040004,
                                             0x0004000400040004, 0, 0, 0, 0);
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    for (int64_t sb = 0; sb < a.k / 256; ++sb) {
      float dr[R];
      __m256 mr[R];
      __m512i scp[R][2];  // per chunk pair: the scale of each packed lane
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) {
        const Block& blk = wr[r][sb];
        uint32_t u[4];
        unpack_scales_mins(blk.scales, u);
        const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(
            _mm_cvtsi64_si128(static_cast<int64_t>(u[0] | (static_cast<uint64_t>(u[1]) << 32)))));
        const __m128i mins = _mm_cvtepu8_epi16(
            _mm_cvtsi64_si128(static_cast<int64_t>(u[2] | (static_cast<uint64_t>(u[3]) << 32))));
        mr[r] =
            _mm256_mul_ps(_mm256_set1_ps(fp16(blk.dmin)), _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(mins)));
        FERRUM_UNROLL
        for (int p = 0; p < 2; ++p)
          scp[r][p] = _mm512_permutexvar_epi16(load512(kPairScaleIndex<2>.idx[p]), sc16);
        dr[r] = fp16(blk.d);
      }
      __m512i acci[R][T][kChains] = {};
      FERRUM_UNROLL
      for (int p = 0; p < 2; ++p) {
        __m512i wq[R][2];
        FERRUM_UNROLL
        for (int r = 0; r < R; ++r) {
          const Block& blk = wr[r][sb];
          FERRUM_UNROLL
          for (int h = 0; h < 2; ++h) {
            const int c = 2 * p + h;
            wq[r][h] = _mm512_and_si512(_mm512_srlv_epi16(broadcast256(blk.qs + 32 * c), shift04), low4);
            if constexpr (kFiveBit) {
              const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << (2 * c))),
                                                     _mm256_set1_epi8(static_cast<char>(2 << (2 * c))), 1);
              const __mmask64 hi = _mm512_test_epi8_mask(broadcast256(blk.qh), bit);
              wq[r][h] = _mm512_mask_add_epi8(wq[r][h], hi, wq[r][h], _mm512_set1_epi8(16));
            }
          }
        }
        FERRUM_UNROLL
        for (int t = 0; t < T; ++t) {
          const __m512i a0 = load512(act.qs[t] + 256 * sb + 128 * p);
          const __m512i a1 = load512(act.qs[t] + 256 * sb + 128 * p + 64);
          FERRUM_UNROLL
          for (int r = 0; r < R; ++r)
            acci[r][t][p % kChains] =
                dot_chunk_pair(acci[r][t][p % kChains], wq[r][0], a0, wq[r][1], a1, scp[r][p]);
        }
      }
      __m512 dpair[kPairs], mpair[kPairs];
      FERRUM_UNROLL
      for (int i = 0; i < kPairs; ++i) {
        dpair[i] = pair_factor<R>(dr, i);
        mpair[i] = pair_halves<R>(mr, i);
      }
      FERRUM_UNROLL
      for (int t = 0; t < T; ++t) {
        const __m512 da = _mm512_set1_ps(act.d[t][sb]);
        const __m512 sums = _mm512_broadcast_f32x8(_mm256_loadu_ps(act.dsums[t] + 8 * sb));
        FERRUM_UNROLL
        for (int i = 0; i < kPairs; ++i) {
          const __m512i folded = folded_pair(acci, i, t);
          // acc += d * d_a * dot - sum_j (dmin * m_j) * (d_a * bsum32_j)
          acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(folded), _mm512_mul_ps(dpair[i], da), acc[i][t]);
          acc[i][t] = _mm512_fnmadd_ps(mpair[i], sums, acc[i][t]);
        }
      }
    }
    store_row_pairs<R, T>(acc, a);
  }
};

// Q6_K: 4 steps of 64 elements; step s = 2h + p covers elements 128h + 64p .. +63, whose low 4 bits
// are nibble p of ql[64h .. 64h+63] and whose high 2 bits come from qh[32h .. 32h+31] (bits 0-1 / 2-3
// for p = 0, bits 4-5 / 6-7 for p = 1, in the lower / upper 32 elements).
template <int R, int T>
struct Q6_KTile {
  static constexpr int kChains = kChainsFor<R, T>;
  static void run(const TileArgs& a) {
    const ActRows<T> act(a);
    const BlockQ6_K* wr[R];
    FERRUM_UNROLL
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ6_K*>(a.w + r * a.w_row_bytes);
    constexpr int kPairs = kRowPairs<R>;
    __m512 acc[kPairs][T] = {};
    const __m512i shl42 =
        _mm512_set_epi64(0x0002000200020002, 0x0002000200020002, 0x0002000200020002, 0x0002000200020002,
                         0x0004000400040004, 0x0004000400040004, 0x0004000400040004, 0x0004000400040004);
    const __m512i shr02 = _mm512_set_epi64(0x0002000200020002, 0x0002000200020002, 0x0002000200020002,
                                           0x0002000200020002, 0, 0, 0, 0);
    const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
    for (int64_t sb = 0; sb < a.k / 256; ++sb) {
      float dr[R];
      __m256i scn[R];     // -32 * scale per sub-block
      __m512i scp[R][2];  // per step pair: the scale of each packed lane
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) {
        const BlockQ6_K& blk = wr[r][sb];
        const __m256i sc16 =
            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales)));
        FERRUM_UNROLL
        for (int h = 0; h < 2; ++h)
          scp[r][h] =
              _mm512_permutexvar_epi16(load512(kPairScaleIndex<4>.idx[h]), _mm512_castsi256_si512(sc16));
        scn[r] = _mm256_mullo_epi16(sc16, _mm256_set1_epi16(-32));
        dr[r] = fp16(blk.d);
      }
      __m512i acci[R][T][kChains] = {};
      FERRUM_UNROLL
      for (int h = 0; h < 2; ++h) {
        // Steps 2h and 2h+1 share their ql and qh bytes.
        __m512i wq[R][2];
        FERRUM_UNROLL
        for (int r = 0; r < R; ++r) {
          const BlockQ6_K& blk = wr[r][sb];
          const __m512i l = load512(blk.ql + 64 * h);
          const __m512i qh = broadcast256(blk.qh + 32 * h);
          wq[r][0] = _mm512_ternarylogic_epi32(_mm512_and_si512(l, low4), _mm512_sllv_epi16(qh, shl42),
                                               bits45, 0xF8);
          wq[r][1] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(l, 4), low4),
                                               _mm512_srlv_epi16(qh, shr02), bits45, 0xF8);
        }
        FERRUM_UNROLL
        for (int t = 0; t < T; ++t) {
          const __m512i a0 = load512(act.qs[t] + 256 * sb + 128 * h);
          const __m512i a1 = load512(act.qs[t] + 256 * sb + 128 * h + 64);
          FERRUM_UNROLL
          for (int r = 0; r < R; ++r)
            acci[r][t][h % kChains] =
                dot_chunk_pair(acci[r][t][h % kChains], wq[r][0], a0, wq[r][1], a1, scp[r][h]);
        }
      }
      __m512 dpair[kPairs];
      __m512i npair[kPairs];  // row 2i's offsets in int16 lanes 0-15, row 2i+1's (or zeros) in 16-31
      FERRUM_UNROLL
      for (int i = 0; i < kPairs; ++i) {
        dpair[i] = pair_factor<R>(dr, i);
        npair[i] = pair_halves<R>(scn, i);
      }
      FERRUM_UNROLL
      for (int t = 0; t < T; ++t) {
        const __m512 da = _mm512_set1_ps(act.d[t][sb]);
        const __m512i bs = _mm512_broadcast_i64x4(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(act.bsums[t] + 16 * sb)));
        FERRUM_UNROLL
        for (int i = 0; i < kPairs; ++i) {
          const __m512i folded = folded_pair(acci, i, t);
          const __m512i dot = _mm512_dpwssd_epi32(folded, bs, npair[i]);
          acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dpair[i], da), acc[i][t]);
        }
      }
    }
    store_row_pairs<R, T>(acc, a);
  }
};

template <int R, int T>
using Q4_KTile = K45Tile<false, R, T>;
template <int R, int T>
using Q5_KTile = K45Tile<true, R, T>;

constexpr MatmulKernel make(const char* name, DType wt,
                            void (*gemm)(const uint8_t*, size_t, const void*, size_t, int64_t, int64_t,
                                         float*, int64_t, int64_t)) {
  MatmulKernel k;
  k.name = name;
  k.weight_type = wt;
  k.act_type = DType::Q8_K;
  k.quantize_act = quantize_act_q8_k_avx512;
  k.gemm = gemm;
  return k;
}

// Decode reads one row at a time: a single linear stream keeps DRAM busier than several interleaved
// rows (measured ~15 vs ~12 GB/s on one core). Prefill: 2 x 6 tiles, 12 int + 12 float accumulators.
constexpr MatmulKernel kQ4_K = make("q4_K x q8_K avx512vnni", DType::Q4_K, run_tiles<Q4_KTile, 1, 2, 6>);
constexpr MatmulKernel kQ5_K = make("q5_K x q8_K avx512vnni", DType::Q5_K, run_tiles<Q5_KTile, 1, 2, 6>);
constexpr MatmulKernel kQ6_K = make("q6_K x q8_K avx512vnni", DType::Q6_K, run_tiles<Q6_KTile, 1, 2, 6>);

}  // namespace

const MatmulKernel* avx512_k_kernel(DType weight_type) {
  switch (weight_type) {
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
