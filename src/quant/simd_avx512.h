// Small AVX-512 helpers shared by the *_avx512.cpp kernel files (only they may include this).
#pragma once

#include <immintrin.h>

#include <cstdint>

// Register tiles index arrays of __m512 by loop counters: the loops must be unrolled fully so the
// arrays live in registers (GCC does not at -O2 on its own).
#define FERRUM_UNROLL _Pragma("GCC unroll 16")

namespace ferrum::quant::avx512 {

inline float fp16(uint16_t h) { return _cvtsh_ss(h); }

// Sum of the 4 lanes.
inline float hsum128(__m128 x) {
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}
// Sum of the 16 lanes.
inline float hsum(__m512 v) {
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  return hsum128(_mm512_castps512_ps128(v));
}
// Sum of the 8 lanes.
inline float hsum256(__m256 v) {
  return hsum128(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

// Lanes 0-7 = a, lanes 8-15 = b.
inline __m512 pair_lanes(__m128 ab) {
  return _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                               _mm512_castps128_ps512(ab));
}
// Two fp16 values (a in lanes 0-7, b in 8-15) as float lanes.
inline __m512 pair_lanes_fp16(uint16_t a, uint16_t b) {
  return pair_lanes(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(a | (static_cast<uint32_t>(b) << 16)))));
}
// Two consecutive floats p[0] (lanes 0-7) and p[1] (lanes 8-15).
inline __m512 pair_lanes_f32(const float* p) {
  return pair_lanes(_mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(p))));
}

}  // namespace ferrum::quant::avx512
