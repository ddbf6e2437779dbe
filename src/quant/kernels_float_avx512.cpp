// F32 / F16 / BF16 weights x float32 activations with AVX-512: weights are converted exactly to
// float32 (F16C, or a 16-bit shift for BF16) and multiplied with FMA; activations are never rounded.
#include <immintrin.h>

#include "quant/kernels.h"
#include "quant/simd_avx512.h"
#include "quant/tiling.h"

namespace ferrum::quant {
namespace {

template <DType WT>
inline __m512 load_w(const uint8_t* row, int64_t i) {
  if constexpr (WT == DType::F32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + i);
  } else if constexpr (WT == DType::F16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i)));
  } else {
    const __m512i u =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
  }
}

template <DType WT>
inline __m512 load_w_masked(const uint8_t* row, int64_t i, __mmask16 m) {
  if constexpr (WT == DType::F32) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + i);
  } else if constexpr (WT == DType::F16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * i));
  } else {
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
  }
}

template <DType WT, int R, int T>
struct FloatTile {
  static void run(const TileArgs& a) {
    __m512 acc[R][T] = {};
    const float* x[T];
    FERRUM_UNROLL
    for (int t = 0; t < T; ++t) x[t] = reinterpret_cast<const float*>(a.act + t * a.act_row_bytes);
    int64_t i = 0;
    // Decode streams R rows at once, more streams than the hardware prefetcher follows well: the
    // next tile (the R rows after these, contiguous) is prefetched in step with this one.
    constexpr int64_t kStepBytes = R * 16 * int64_t(WT == DType::F32 ? 4 : 2);
    const uint8_t* next = a.w + R * a.w_row_bytes;
    for (; i + 16 <= a.k; i += 16) {
      if constexpr (T == 1) {
        FERRUM_UNROLL
        for (int64_t b = 0; b < kStepBytes; b += 64)
          _mm_prefetch(reinterpret_cast<const char*>(next + i / 16 * kStepBytes + b), _MM_HINT_T0);
      }
      __m512 wv[R];
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) wv[r] = load_w<WT>(a.w + r * a.w_row_bytes, i);
      FERRUM_UNROLL
      for (int t = 0; t < T; ++t) {
        const __m512 xv = _mm512_loadu_ps(x[t] + i);
        FERRUM_UNROLL
        for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
      }
    }
    if (i < a.k) {
      const auto m = static_cast<__mmask16>((1u << (a.k - i)) - 1);
      __m512 wv[R];
      FERRUM_UNROLL
      for (int r = 0; r < R; ++r) wv[r] = load_w_masked<WT>(a.w + r * a.w_row_bytes, i, m);
      FERRUM_UNROLL
      for (int t = 0; t < T; ++t) {
        const __m512 xv = _mm512_maskz_loadu_ps(m, x[t] + i);
        FERRUM_UNROLL
        for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
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
using F32Tile = FloatTile<DType::F32, R, T>;
template <int R, int T>
using F16Tile = FloatTile<DType::F16, R, T>;
template <int R, int T>
using BF16Tile = FloatTile<DType::BF16, R, T>;

constexpr MatmulKernel make(const char* name, DType wt,
                            void (*gemm)(const uint8_t*, size_t, const void*, size_t, int64_t, int64_t,
                                         float*, int64_t, int64_t)) {
  MatmulKernel k;
  k.name = name;
  k.weight_type = wt;
  k.gemm = gemm;
  return k;
}

// 4 x 6 tiles: 24 accumulators + 4 weight vectors fit the 32 registers.
constexpr MatmulKernel kF32 = make("f32 x f32 avx512", DType::F32, run_tiles<F32Tile, 8, 4, 6>);
constexpr MatmulKernel kF16 = make("f16 x f32 avx512 f16c", DType::F16, run_tiles<F16Tile, 8, 4, 6>);
constexpr MatmulKernel kBF16 = make("bf16 x f32 avx512", DType::BF16, run_tiles<BF16Tile, 8, 4, 6>);

}  // namespace

const MatmulKernel* avx512_float_kernel(DType weight_type) {
  switch (weight_type) {
    case DType::F32:
      return &kF32;
    case DType::F16:
      return &kF16;
    case DType::BF16:
      return &kBF16;
    default:
      return nullptr;
  }
}

}  // namespace ferrum::quant
