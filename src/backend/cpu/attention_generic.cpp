#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/cpu/attention_kernel.h"

namespace ferrum::cpu {

void attend_generic(const AttendTask& a) {
  const int64_t hd = a.head_dim, heads = a.h_end - a.h_begin;
  const int64_t n_rows = (a.t_end - a.t_begin) * heads;
  float m[kMaxTaskRows], l[kMaxTaskRows];
  int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
  for (int64_t t = a.t_begin; t < a.t_end; ++t) {
    lo = std::min(lo, a.window > 0 ? std::max<int64_t>(0, a.kv_end[t] - a.window) : 0);
    hi = std::max<int64_t>(hi, a.kv_end[t]);
  }
  for (int64_t r = 0; r < n_rows; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
    float* o = a.out + (a.t_begin + r / heads) * a.out_stride + (a.h_begin + r % heads) * hd;
    std::fill(o, o + hd, 0.0f);
  }
  const float* kp[kKeyBlock];
  const float* vp[kKeyBlock];
  float s[kKeyBlock];
  for (int64_t j0 = lo / kKeyBlock * kKeyBlock; j0 < hi; j0 += kKeyBlock) {
    const int64_t j_end = std::min(j0 + kKeyBlock, hi);
    for (int64_t j = j0; j < j_end; ++j) {
      const int64_t slot = int64_t(a.table[j / a.block_size]) * a.block_size + j % a.block_size;
      kp[j - j0] = a.k_cache + slot * a.kv_stride + a.kv_offset;
      vp[j - j0] = a.v_cache + slot * a.kv_stride + a.kv_offset;
    }
    for (int64_t r = 0; r < n_rows; ++r) {
      const int64_t t = a.t_begin + r / heads, h = a.h_begin + r % heads;
      const int64_t first = a.window > 0 ? std::max<int64_t>(0, a.kv_end[t] - a.window) : 0;
      const int64_t b0 = std::max(j0, first), b1 = std::min<int64_t>(j_end, a.kv_end[t]);
      if (b0 >= b1) continue;
      const float* qr = a.q + t * a.q_stride + h * hd;
      float* o = a.out + t * a.out_stride + h * hd;
      float bm = -INFINITY;
      for (int64_t j = b0; j < b1; ++j) {
        float d = 0.0f;
        for (int64_t i = 0; i < hd; ++i) d += qr[i] * kp[j - j0][i];
        s[j - j0] = d * a.scale;
        bm = std::max(bm, s[j - j0]);
      }
      const float m_new = std::max(m[r], bm);
      const float corr = m[r] == -INFINITY ? 0.0f : std::exp(m[r] - m_new);
      float sum = 0.0f;
      for (int64_t j = b0; j < b1; ++j) {
        s[j - j0] = std::exp(s[j - j0] - m_new);
        sum += s[j - j0];
      }
      l[r] = l[r] * corr + sum;
      m[r] = m_new;
      for (int64_t i = 0; i < hd; ++i) o[i] *= corr;
      for (int64_t j = b0; j < b1; ++j)
        for (int64_t i = 0; i < hd; ++i) o[i] += s[j - j0] * vp[j - j0][i];
    }
  }
  for (int64_t r = 0; r < n_rows; ++r) {
    float* o = a.out + (a.t_begin + r / heads) * a.out_stride + (a.h_begin + r % heads) * hd;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    for (int64_t i = 0; i < hd; ++i) o[i] *= inv;
  }
}

}  // namespace ferrum::cpu
