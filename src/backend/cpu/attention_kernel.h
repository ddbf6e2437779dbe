// Paged attention kernels of the CPU backend. A task is a tile of query rows that share their keys:
// tokens [t_begin, t_end) of one sequence times query heads [h_begin, h_end) of one KV head. The
// task walks the keys in blocks of kKeyBlock (aligned to absolute key positions) and keeps an
// online softmax per row; each block's K and V rows are read once from memory for all the rows.
//
// Batch invariance: every row is computed with the same arithmetic in the same order whatever tile
// it is in (block and 16-key group boundaries are absolute positions, masked keys contribute
// nothing), so a token's output does not depend on what else the step holds.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace ferrum::cpu {

constexpr int64_t kKeyBlock = 64;
// Rows of one task at most (per-row softmax state lives on the stack).
constexpr int64_t kMaxTaskRows = 64;
// The AVX-512 kernel pads partial key groups with a zero row of this many floats; longer heads use
// the generic kernel.
constexpr int64_t kMaxFastHeadDim = 512;

struct AttendTask {
  const float* q;  // token t, head h: q + t * q_stride + h * head_dim
  int64_t q_stride;
  float* out;  // same layout as q
  int64_t out_stride;
  const float* k_cache;  // cache row (slot) s: k_cache + s * kv_stride
  const float* v_cache;
  int64_t kv_stride;
  const int32_t* table;  // the sequence's KV block ids
  int64_t block_size;
  const int32_t* kv_end;  // token t sees keys [kv_end[t] - window, kv_end[t]) (window 0: all)
  int64_t t_begin, t_end, h_begin, h_end;
  int64_t head_dim, kv_offset;  // kv_offset = KV head * head_dim
  int64_t window;
  float scale;
};

// The bookkeeping both kernels share: rows r = (token, head) of a task, their online-softmax state
// (running max m, sum l), the key range of the task, the K/V rows of a key block.
struct AttendRows {
  const AttendTask& a;
  int64_t heads, n_rows;
  int64_t lo, hi;  // keys any row of the task sees
  float m[kMaxTaskRows], l[kMaxTaskRows];

  // Zeroes the output rows and the softmax state.
  explicit AttendRows(const AttendTask& task)
      : a(task), heads(task.h_end - task.h_begin), n_rows((task.t_end - task.t_begin) * heads) {
    lo = std::numeric_limits<int64_t>::max();
    hi = 0;
    for (int64_t t = a.t_begin; t < a.t_end; ++t) {
      lo = std::min(lo, first_key(t));
      hi = std::max<int64_t>(hi, a.kv_end[t]);
    }
    for (int64_t r = 0; r < n_rows; ++r) {
      m[r] = -INFINITY;
      l[r] = 0.0f;
      std::fill(out(r), out(r) + a.head_dim, 0.0f);
    }
  }
  int64_t token(int64_t r) const { return a.t_begin + r / heads; }
  int64_t head(int64_t r) const { return a.h_begin + r % heads; }
  const float* q(int64_t r) const { return a.q + token(r) * a.q_stride + head(r) * a.head_dim; }
  float* out(int64_t r) const { return a.out + token(r) * a.out_stride + head(r) * a.head_dim; }
  int64_t first_key(int64_t t) const {
    return a.window > 0 ? std::max<int64_t>(0, a.kv_end[t] - a.window) : 0;
  }
  // The K and V rows of keys [j0, j_end).
  void key_rows(int64_t j0, int64_t j_end, const float** kp, const float** vp) const {
    for (int64_t j = j0; j < j_end; ++j) {
      const int64_t slot = int64_t(a.table[j / a.block_size]) * a.block_size + j % a.block_size;
      kp[j - j0] = a.k_cache + slot * a.kv_stride + a.kv_offset;
      vp[j - j0] = a.v_cache + slot * a.kv_stride + a.kv_offset;
    }
  }
  // Divides every output row by its softmax sum.
  void finish() const {
    for (int64_t r = 0; r < n_rows; ++r) {
      const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
      float* o = out(r);
      for (int64_t i = 0; i < a.head_dim; ++i) o[i] *= inv;
    }
  }
};

// Plain loops; any CPU.
void attend_generic(const AttendTask& a);
// AVX-512F: 16 keys scored at once, vector exp.
void attend_avx512(const AttendTask& a);

}  // namespace ferrum::cpu
