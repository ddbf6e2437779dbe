// Paged attention with an online softmax. Blocks are (tile of 16 tokens, query head, token z of the
// tile):
//  - a tile whose tokens all belong to one sequence (prefill) is one block (z = 0) that stages 32-key
//    K/V tiles of that sequence in shared memory once for all its tokens; each lane scores one key;
//  - in any other tile (decode batches: one token per sequence) block z takes token z, the warps
//    splitting the token's keys and merging their partial softmax states at the end.
// A decode token's result therefore depends only on its own sequence, never on the batch.
#include <cfloat>

#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.h"

namespace ferrum::cuda {

namespace {

// 16 warps: a decode token's keys are split 16 ways, which shortens the chain of dependent block-table
// and key loads that bounds a single sequence's decode attention.
constexpr int kWarps = 16;
constexpr int kQTile = 16;
constexpr int kKeyTile = 32;
constexpr int kTokensPerWarp = kQTile / kWarps;
constexpr int kKeyGroup = 8;  // keys a warp scores at once in the per-token path

size_t smem_floats(int64_t hd) {
  const size_t tiled = static_cast<size_t>(kKeyTile * (hd + 1) + kKeyTile * hd + kQTile * hd);
  const size_t merge = static_cast<size_t>(kWarps * (hd + 2));
  return tiled > merge ? tiled : merge;
}

__device__ __forceinline__ int64_t first_key(const AttnArgs& a, int64_t end) {
  return a.window > 0 ? (end - a.window > 0 ? end - a.window : 0) : 0;
}

__device__ __forceinline__ int64_t slot_of(const AttnArgs& a, const int32_t* table, int64_t j) {
  return int64_t(table[j / a.block_size]) * a.block_size + j % a.block_size;
}

// Per-token path: lanes hold dims lane, lane + 32, ... (D of them).
template <int D>
__device__ void attend_token(const AttnArgs& a, int64_t t, int64_t h, CFMat q, CFMat kc, CFMat vc, FMat out,
                             float* sm) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t hd = a.head_dim, koff = (h / (a.n_heads / a.n_kv_heads)) * hd;
  const int32_t* table = a.block_tables + int64_t(a.seq_index[t]) * a.max_blocks;
  const int64_t end = a.kv_end[t], first = first_key(a, end);
  float qv[D], o[D];
#pragma unroll
  for (int i = 0; i < D; ++i) {
    const int64_t d = lane + 32 * i;
    qv[i] = d < hd ? q.p[t * q.ld + h * hd + d] : 0.0f;
    o[i] = 0.0f;
  }
  float m = -FLT_MAX, l = 0.0f;
  bool any = false;
  for (int64_t j0 = first + kKeyGroup * warp; j0 < end; j0 += kKeyGroup * kWarps) {
    float sc[kKeyGroup];
    int64_t slot[kKeyGroup];
#pragma unroll
    for (int u = 0; u < kKeyGroup; ++u) {
      const int64_t j = j0 + u;
      slot[u] = j < end ? slot_of(a, table, j) : 0;
      float part = 0.0f;
      if (j < end) {
        const float* kr = kc.p + slot[u] * kc.ld + koff;
#pragma unroll
        for (int i = 0; i < D; ++i)
          if (lane + 32 * i < hd) part = fmaf(qv[i], kr[lane + 32 * i], part);
      }
      sc[u] = part;
    }
    float bm = -FLT_MAX;
#pragma unroll
    for (int u = 0; u < kKeyGroup; ++u) {
      sc[u] = warp_sum(sc[u]) * a.scale;
      if (j0 + u < end) bm = fmaxf(bm, sc[u]);
    }
    const float m_new = any ? fmaxf(m, bm) : bm;
    const float corr = any ? expf(m - m_new) : 0.0f;
    l *= corr;
#pragma unroll
    for (int i = 0; i < D; ++i) o[i] *= corr;
#pragma unroll
    for (int u = 0; u < kKeyGroup; ++u) {
      if (j0 + u >= end) break;
      const float p = expf(sc[u] - m_new);
      l += p;
      const float* vr = vc.p + slot[u] * vc.ld + koff;
#pragma unroll
      for (int i = 0; i < D; ++i)
        if (lane + 32 * i < hd) o[i] = fmaf(p, vr[lane + 32 * i], o[i]);
    }
    m = m_new;
    any = true;
  }
  // Merge the warps' (max, sum, output) states.
  float* mine = sm + warp * (hd + 2);
#pragma unroll
  for (int i = 0; i < D; ++i)
    if (lane + 32 * i < hd) mine[lane + 32 * i] = o[i];
  if (lane == 0) {
    mine[hd] = any ? m : -FLT_MAX;
    mine[hd + 1] = l;
  }
  __syncthreads();
  float mx = -FLT_MAX;
  for (int w = 0; w < kWarps; ++w)
    if (sm[w * (hd + 2) + hd + 1] > 0.0f) mx = fmaxf(mx, sm[w * (hd + 2) + hd]);
  float e[kWarps], total = 0.0f;
  for (int w = 0; w < kWarps; ++w) {
    const float lw = sm[w * (hd + 2) + hd + 1];
    e[w] = lw > 0.0f ? expf(sm[w * (hd + 2) + hd] - mx) : 0.0f;
    total += lw * e[w];
  }
  for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float acc = 0.0f;
    for (int w = 0; w < kWarps; ++w) acc += sm[w * (hd + 2) + d] * e[w];
    out.p[t * out.ld + h * hd + d] = total > 0.0f ? acc / total : 0.0f;
  }
}

// Tiled path for tokens t0 .. t1-1 of one sequence; warp w owns tokens t0 + w + kWarps u.
template <int D>
__device__ void attend_tile(const AttnArgs& a, int64_t t0, int64_t t1, int64_t h, CFMat q, CFMat kc, CFMat vc,
                            FMat out, float* sm) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t hd = a.head_dim, koff = (h / (a.n_heads / a.n_kv_heads)) * hd;
  const int32_t* table = a.block_tables + int64_t(a.seq_index[t0]) * a.max_blocks;
  float* ks = sm;                        // [kKeyTile][hd + 1]: the pad keeps lanes on distinct banks
  float* vs = ks + kKeyTile * (hd + 1);  // [kKeyTile][hd]
  float* qs = vs + kKeyTile * hd;        // [kQTile][hd]
  int64_t lo = INT64_MAX, hi = 0;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t end = a.kv_end[t];
    lo = min(lo, first_key(a, end));
    hi = max(hi, end);
  }
  for (int64_t i = threadIdx.x; i < (t1 - t0) * hd; i += blockDim.x)
    qs[i] = q.p[(t0 + i / hd) * q.ld + h * hd + i % hd];

  float m[kTokensPerWarp], l[kTokensPerWarp], o[kTokensPerWarp][D];
  int64_t first[kTokensPerWarp], end[kTokensPerWarp];
#pragma unroll
  for (int u = 0; u < kTokensPerWarp; ++u) {
    const int64_t t = t0 + warp + kWarps * u;
    end[u] = t < t1 ? a.kv_end[t] : 0;
    first[u] = t < t1 ? first_key(a, end[u]) : 0;
    m[u] = -FLT_MAX;
    l[u] = 0.0f;
#pragma unroll
    for (int i = 0; i < D; ++i) o[u][i] = 0.0f;
  }
  for (int64_t j0 = lo; j0 < hi; j0 += kKeyTile) {
    __syncthreads();  // the previous tile (and, first time, qs) is complete / consumed
    for (int64_t i = threadIdx.x; i < kKeyTile * hd; i += blockDim.x) {
      const int64_t jj = i / hd, d = i - jj * hd, j = j0 + jj;
      float kv = 0.0f, vv = 0.0f;
      if (j < hi) {
        const int64_t slot = slot_of(a, table, j);
        kv = kc.p[slot * kc.ld + koff + d];
        vv = vc.p[slot * vc.ld + koff + d];
      }
      ks[jj * (hd + 1) + d] = kv;
      vs[jj * hd + d] = vv;
    }
    __syncthreads();
#pragma unroll
    for (int u = 0; u < kTokensPerWarp; ++u) {
      const int64_t t = t0 + warp + kWarps * u;
      if (t >= t1) continue;
      const int64_t j = j0 + lane;
      const bool valid = j >= first[u] && j < end[u];
      float s = -FLT_MAX;
      if (valid) {
        const float* qr = qs + (t - t0) * hd;
        const float* kr = ks + lane * (hd + 1);
        float dot = 0.0f;
        for (int64_t d = 0; d < hd; ++d) dot = fmaf(qr[d], kr[d], dot);
        s = dot * a.scale;
      }
      if (!__any_sync(0xffffffffu, valid)) continue;
      const float bm = warp_max(s);
      const bool had = l[u] > 0.0f;
      const float m_new = had ? fmaxf(m[u], bm) : bm;
      const float corr = had ? expf(m[u] - m_new) : 0.0f;
      const float p = valid ? expf(s - m_new) : 0.0f;
      l[u] = l[u] * corr + warp_sum(p);
#pragma unroll
      for (int i = 0; i < D; ++i) o[u][i] *= corr;
      for (int jj = 0; jj < kKeyTile; ++jj) {
        const float pj = __shfl_sync(0xffffffffu, p, jj);
        const float* vr = vs + jj * hd;
#pragma unroll
        for (int i = 0; i < D; ++i)
          if (lane + 32 * i < hd) o[u][i] = fmaf(pj, vr[lane + 32 * i], o[u][i]);
      }
      m[u] = m_new;
    }
  }
#pragma unroll
  for (int u = 0; u < kTokensPerWarp; ++u) {
    const int64_t t = t0 + warp + kWarps * u;
    if (t >= t1) continue;
#pragma unroll
    for (int i = 0; i < D; ++i)
      if (lane + 32 * i < hd)
        out.p[t * out.ld + h * hd + lane + 32 * i] = l[u] > 0.0f ? o[u][i] / l[u] : 0.0f;
  }
}

template <int D>
__global__ void __launch_bounds__(kWarps * 32)
    attention_kernel(AttnArgs a, CFMat q, CFMat kc, CFMat vc, FMat out) {
  extern __shared__ float sm[];
  allow_dependents();
  wait_for_inputs();
  const int64_t h = blockIdx.y, t0 = int64_t(blockIdx.x) * kQTile;
  const int64_t t1 = min(a.n_tokens, t0 + kQTile);
  bool one_seq = t1 - t0 > 1;
  for (int64_t t = t0 + 1; t < t1 && one_seq; ++t) one_seq = a.seq_index[t] == a.seq_index[t0];
  if (one_seq) {
    if (blockIdx.z == 0) attend_tile<D>(a, t0, t1, h, q, kc, vc, out, sm);
  } else if (t0 + blockIdx.z < t1) {
    attend_token<D>(a, t0 + blockIdx.z, h, q, kc, vc, out, sm);
  }
}

template <int D>
cudaError_t launch_heads(cudaStream_t s, const AttnArgs& a, CFMat q, CFMat kc, CFMat vc, FMat out) {
  const dim3 grid(static_cast<unsigned>((a.n_tokens + kQTile - 1) / kQTile), static_cast<unsigned>(a.n_heads),
                  static_cast<unsigned>(a.n_tokens < kQTile ? a.n_tokens : kQTile));
  return launch(attention_kernel<D>, grid, kWarps * 32, smem_floats(a.head_dim) * sizeof(float), s, a, q, kc,
                vc, out);
}

template <int D>
cudaError_t allow_smem() {
  return cudaFuncSetAttribute(attention_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(smem_floats(32 * D) * sizeof(float)));
}

}  // namespace

cudaError_t attention(cudaStream_t s, const AttnArgs& a, CFMat q, CFMat k_cache, CFMat v_cache, FMat out) {
  if (a.n_tokens == 0) return cudaSuccess;
  if (a.head_dim <= 32) return launch_heads<1>(s, a, q, k_cache, v_cache, out);
  if (a.head_dim <= 64) return launch_heads<2>(s, a, q, k_cache, v_cache, out);
  if (a.head_dim <= 128) return launch_heads<4>(s, a, q, k_cache, v_cache, out);
  return launch_heads<8>(s, a, q, k_cache, v_cache, out);
}

cudaError_t init_attention() {
  for (cudaError_t e : {allow_smem<1>(), allow_smem<2>(), allow_smem<4>(), allow_smem<8>()})
    if (e != cudaSuccess) return e;
  return cudaSuccess;
}

}  // namespace ferrum::cuda
