// Paged attention kernels of the CPU backend. A task is a tile of query rows that share their keys:
// tokens [t_begin, t_end) of one sequence times query heads [h_begin, h_end) of one KV head. The
// task walks the keys in blocks of kKeyBlock (aligned to absolute key positions) and keeps an
// online softmax per row; each block's K and V rows are read once from memory for all the rows.
//
// Batch invariance: every row is computed with the same arithmetic in the same order whatever tile
// it is in (block and 16-key group boundaries are absolute positions, masked keys contribute
// nothing), so a token's output does not depend on what else the step holds.
#pragma once

#include <cstdint>

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

// Plain loops; any CPU.
void attend_generic(const AttendTask& a);
// AVX-512F: 16 keys scored at once, vector exp.
void attend_avx512(const AttendTask& a);

}  // namespace ferrum::cpu
