#include <algorithm>
#include <cmath>

#include "backend/cpu/attention_kernel.h"

namespace ferrum::cpu {

void attend_generic(const AttendTask& a) {
  const int64_t hd = a.head_dim;
  AttendRows rows(a);
  const float* kp[kKeyBlock];
  const float* vp[kKeyBlock];
  float s[kKeyBlock];
  for (int64_t j0 = rows.lo / kKeyBlock * kKeyBlock; j0 < rows.hi; j0 += kKeyBlock) {
    const int64_t j_end = std::min(j0 + kKeyBlock, rows.hi);
    rows.key_rows(j0, j_end, kp, vp);
    for (int64_t r = 0; r < rows.n_rows; ++r) {
      const int64_t t = rows.token(r);
      const int64_t b0 = std::max(j0, rows.first_key(t)), b1 = std::min<int64_t>(j_end, a.kv_end[t]);
      if (b0 >= b1) continue;
      const float* qr = rows.q(r);
      float* o = rows.out(r);
      float bm = -INFINITY;
      for (int64_t j = b0; j < b1; ++j) {
        float d = 0.0f;
        for (int64_t i = 0; i < hd; ++i) d += qr[i] * kp[j - j0][i];
        s[j - j0] = d * a.scale;
        bm = std::max(bm, s[j - j0]);
      }
      const float m_new = std::max(rows.m[r], bm);
      const float corr = rows.m[r] == -INFINITY ? 0.0f : std::exp(rows.m[r] - m_new);
      float sum = 0.0f;
      for (int64_t j = b0; j < b1; ++j) {
        s[j - j0] = std::exp(s[j - j0] - m_new);
        sum += s[j - j0];
      }
      rows.l[r] = rows.l[r] * corr + sum;
      rows.m[r] = m_new;
      for (int64_t i = 0; i < hd; ++i) o[i] *= corr;
      for (int64_t j = b0; j < b1; ++j)
        for (int64_t i = 0; i < hd; ++i) o[i] += s[j - j0] * vp[j - j0][i];
    }
  }
  rows.finish();
}

}  // namespace ferrum::cpu
