// AVX-512 paged attention (see attention_kernel.h). Per row and key block: scores 16 keys at a time
// (one accumulator per key, summed across lanes by a fixed transpose-and-add tree), a vector exp,
// then the value rows accumulated into the output in key order, 8 vectors of the head at a time.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/attention_kernel.h"
#include "backend/cpu/math_avx512.h"

namespace ferrum::cpu {
namespace {

alignas(64) const float kZeroRow[kMaxFastHeadDim] = {};

// Lane i of the result = the sum of the lanes of the accumulator for key i. acc[s] must hold key
// 4 * (s % 4) + s / 4 (the tree below ends with the keys in that transposed order).
inline __m512 sum_lanes_16(const __m512 (&acc)[16]) {
  __m512 x[8], y[4], z[2];
  for (int i = 0; i < 8; ++i)
    x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(acc[2 * i], acc[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(acc[2 * i], acc[2 * i + 1], 0xEE));
  for (int i = 0; i < 4; ++i)
    y[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], 0xDD));
  for (int i = 0; i < 2; ++i)
    z[i] = _mm512_add_ps(_mm512_shuffle_ps(y[2 * i], y[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(y[2 * i], y[2 * i + 1], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_ps(z[0], z[1], 0x88), _mm512_shuffle_ps(z[0], z[1], 0xDD));
}

// Scores of the 16 keys kp[0..15] against q: a head of `passes` passes of N vectors (the last
// vector of each pass has `tail` lanes). In a pass, q stays in N registers while each key's chain
// runs; acc[s] holds key 4 * (s % 4) + s / 4, the order sum_lanes_16 wants. The caller masks keys
// it does not want.
template <int N>
__m512 score_group(const float* q, const float* const* kp, int64_t passes, __mmask16 tail) {
  __m512 acc[16];
#pragma GCC unroll 16
  for (int s = 0; s < 16; ++s) acc[s] = _mm512_setzero_ps();
  for (int64_t c0 = 0; c0 < passes * 16 * N; c0 += 16 * N) {
    __m512 qv[N];
#pragma GCC unroll 8
    for (int i = 0; i < N; ++i)
      qv[i] = _mm512_maskz_loadu_ps(i == N - 1 ? tail : __mmask16(0xFFFF), q + c0 + 16 * i);
#pragma GCC unroll 16
    for (int s = 0; s < 16; ++s) {
      const float* k = kp[4 * (s % 4) + s / 4] + c0;
#pragma GCC unroll 8
      for (int i = 0; i < N; ++i)
        acc[s] = _mm512_fmadd_ps(
            qv[i], _mm512_maskz_loadu_ps(i == N - 1 ? tail : __mmask16(0xFFFF), k + 16 * i), acc[s]);
    }
  }
  return sum_lanes_16(acc);
}

// For each of R rows sharing their keys: o = o * corr + sum over keys j of p[j] v[j], with the
// head split into passes as in score_group. Rows of one token (heads of one KV head) go in pairs
// so each value vector loaded serves both; every row's own arithmetic is the same either way.
template <int N, int R>
void accumulate_values(float* const (&o)[R], int64_t passes, __mmask16 tail, const float (&corr)[R],
                       const float* const (&p)[R], const float* const* vp, int64_t n_keys) {
  for (int64_t c0 = 0; c0 < passes * 16 * N; c0 += 16 * N) {
    __m512 acc[R][N];
#pragma GCC unroll 2
    for (int r = 0; r < R; ++r) {
      const __m512 c = _mm512_set1_ps(corr[r]);
#pragma GCC unroll 8
      for (int i = 0; i < N; ++i)
        acc[r][i] = _mm512_mul_ps(
            _mm512_maskz_loadu_ps(i == N - 1 ? tail : __mmask16(0xFFFF), o[r] + c0 + 16 * i), c);
    }
    for (int64_t j = 0; j < n_keys; ++j) {
      const float* v = vp[j] + c0;
      __m512 pj[R];
#pragma GCC unroll 2
      for (int r = 0; r < R; ++r) pj[r] = _mm512_set1_ps(p[r][j]);
#pragma GCC unroll 8
      for (int i = 0; i < N; ++i) {
        const __m512 vv = _mm512_maskz_loadu_ps(i == N - 1 ? tail : __mmask16(0xFFFF), v + 16 * i);
#pragma GCC unroll 2
        for (int r = 0; r < R; ++r) acc[r][i] = _mm512_fmadd_ps(pj[r], vv, acc[r][i]);
      }
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
      for (int i = 0; i < N; ++i)
        _mm512_mask_storeu_ps(o[r] + c0 + 16 * i, i == N - 1 ? tail : __mmask16(0xFFFF), acc[r][i]);
    }
  }
}

// The kernel for heads of `passes` passes of N vectors of 16 floats.
template <int N>
void attend(const AttendTask& a, int64_t passes, __mmask16 tail) {
  AttendRows rows(a);
  const float* kp[kKeyBlock];
  const float* vp[kKeyBlock];
  alignas(64) float p[2][kKeyBlock];
  for (int64_t j0 = rows.lo / kKeyBlock * kKeyBlock; j0 < rows.hi; j0 += kKeyBlock) {
    const int64_t j_end = std::min(j0 + kKeyBlock, rows.hi);
    rows.key_rows(j0, j_end, kp, vp);
    // Groups of 16 keys are scored whole: keys past the task's range read a zero row.
    std::fill(kp + (j_end - j0), kp + kKeyBlock, kZeroRow);
    std::fill(vp + (j_end - j0), vp + kKeyBlock, kZeroRow);
    for (int64_t r = 0; r < rows.n_rows;) {
      const int64_t t = rows.token(r);
      const int64_t b0 = std::max(j0, rows.first_key(t)), b1 = std::min<int64_t>(j_end, a.kv_end[t]);
      // This row and, when the token has another head left, the next one (same keys).
      const int n = (r % rows.heads) + 1 < rows.heads ? 2 : 1;
      if (b0 >= b1) {
        r += n;
        continue;
      }
      // Groups of 16 keys overlapping [b0, b1), relative to j0.
      const int64_t g0 = (b0 - j0) / 16, g1 = (b1 - j0 + 15) / 16;
      __mmask16 valid[kKeyBlock / 16];
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t k0 = j0 + 16 * g;
        const int64_t from = std::max<int64_t>(b0 - k0, 0), to = std::min<int64_t>(b1 - k0, 16);
        valid[g] = static_cast<__mmask16>(lane_mask(to) & ~lane_mask(from));
      }
      float corr[2];
      float* o[2];
      for (int i = 0; i < n; ++i) {
        float& m = rows.m[r + i];
        float& l = rows.l[r + i];
        o[i] = rows.out(r + i);
        __m512 sv[kKeyBlock / 16];
        float bm = -INFINITY;
        for (int64_t g = g0; g < g1; ++g) {
          sv[g] = _mm512_mul_ps(score_group<N>(rows.q(r + i), kp + 16 * g, passes, tail),
                                _mm512_set1_ps(a.scale));
          bm = std::max(bm, _mm512_mask_reduce_max_ps(valid[g], sv[g]));
        }
        const float m_new = std::max(m, bm);
        corr[i] = m == -INFINITY ? 0.0f : _mm512_cvtss_f32(exp512(_mm512_set1_ps(m - m_new)));
        __m512 sum = _mm512_setzero_ps();
        for (int64_t g = g0; g < g1; ++g) {
          const __m512 e = _mm512_maskz_mov_ps(valid[g], exp512(_mm512_sub_ps(sv[g], _mm512_set1_ps(m_new))));
          _mm512_store_ps(p[i] + 16 * g, e);
          sum = _mm512_add_ps(sum, e);
        }
        l = l * corr[i] + _mm512_reduce_add_ps(sum);
        m = m_new;
      }
      const float* pk[2] = {p[0] + (b0 - j0), p[1] + (b0 - j0)};
      if (n == 2) {
        accumulate_values<N, 2>(o, passes, tail, corr, pk, vp + (b0 - j0), b1 - b0);
      } else {
        accumulate_values<N, 1>({o[0]}, passes, tail, {corr[0]}, {pk[0]}, vp + (b0 - j0), b1 - b0);
      }
      r += n;
    }
  }
  rows.finish();
}

}  // namespace

void attend_avx512(const AttendTask& a) {
  const int64_t hd = a.head_dim;
  // Heads of up to 8 vectors (one pass) or of whole 128-float passes; others (rare) run generic.
  if (hd > kMaxFastHeadDim || (hd > 128 && hd % 128 != 0)) return attend_generic(a);
  const int64_t passes = (hd + 127) / 128, n = std::min<int64_t>(hd, 128);
  const __mmask16 tail = lane_mask(n - (n - 1) / 16 * 16);
  using Kernel = void (*)(const AttendTask&, int64_t, __mmask16);
  static constexpr Kernel kByVectors[] = {attend<1>, attend<2>, attend<3>, attend<4>,
                                          attend<5>, attend<6>, attend<7>, attend<8>};
  kByVectors[(n + 15) / 16 - 1](a, passes, tail);
}

}  // namespace ferrum::cpu
