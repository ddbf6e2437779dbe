// Paged attention with an online softmax: one kernel for every token, prefill or decode. A block takes
// one token and a run of up to kHeads query heads sharing a kv head (each key is read once for the
// run); its 16 warps split the token's keys and merge their partial softmax states at the end. A token's
// result is therefore a function of its query and its own sequence's keys only: the same bits alone or
// batched, in a decode step or in a prefill chunk (so a sequence recomputed after preemption continues
// as it would have). This replaced a prefill path that staged 32-key tiles in shared memory for 16
// tokens at a time: that path gave other bits than decoding, and was slower (Llama-3.1-8B shape
// Q4_K_M, H200: pp512 11 900 vs 12 470 tok/s, pp2048 7 500 vs 8 170).
#include <cfloat>

#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.h"

namespace ferrum::cuda {

namespace {

// 16 warps: a decode token's keys are split 16 ways, which shortens the chain of dependent block-table
// and key loads that bounds a single sequence's decode attention.
constexpr int kWarps = 16;
constexpr int kKeyGroup = 8;  // keys a warp scores at once
constexpr int kHeads = 4;     // query heads (of one kv head) a block serves at most

__device__ __forceinline__ int64_t first_key(const AttnArgs& a, int64_t end) {
  return a.window > 0 ? (end - a.window > 0 ? end - a.window : 0) : 0;
}

__device__ __forceinline__ int64_t slot_of(const AttnArgs& a, const int32_t* table, int64_t j) {
  return int64_t(table[j / a.block_size]) * a.block_size + j % a.block_size;
}

// Sums each of the N values of v over the warp; lane L ends with the sum of value L % N in v[0]. At
// each level lanes with bit N / 2 set keep the upper half of the values, the others the lower half,
// and each adds its partner's copy of the half it keeps.
template <int N>
__device__ __forceinline__ void fold(float (&v)[32], int lane) {
  const bool upper = lane & (N / 2);
#pragma unroll
  for (int i = 0; i < N / 2; ++i) {
    const float send = upper ? v[i] : v[i + N / 2];
    const float keep = upper ? v[i + N / 2] : v[i];
    v[i] = keep + __shfl_xor_sync(0xffffffffu, send, N / 2);
  }
  if constexpr (N > 2) fold<N / 2>(v, lane);
}

// Token t's attention for query heads h .. h + nh - 1 (nh <= kHeads, one kv head): each key is read once for
// all of them. Lanes hold dims lane, lane + 32, ... (D of them) of every head. A warp scores kKeyGroup
// keys at a time: the lanes' 8 x kHeads partial dot products are summed by a transposing butterfly (31
// shuffles, against 5 per sum for separate reductions), after which lane L holds the score of key
// L % 8 for head L / 8; its softmax state (m, l) is that head's, shared by the head's 8 lanes.
template <int D>
__device__ void attend_token(const AttnArgs& a, int64_t t, int64_t h, int nh, CFMat q, CFMat kc, CFMat vc,
                             FMat out, float* sm) {
  static_assert(kKeyGroup * kHeads == 32, "one score per lane");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t hd = a.head_dim, koff = (h / (a.n_heads / a.n_kv_heads)) * hd;
  const int32_t* table = a.block_tables + int64_t(a.seq_index[t]) * a.max_blocks;
  const int64_t end = a.kv_end[t], first = first_key(a, end);
  const int my_key = lane % kKeyGroup;  // lane L scores key L % 8 for head L / 8
  float qv[kHeads][D], o[kHeads][D];
#pragma unroll
  for (int hh = 0; hh < kHeads; ++hh)
#pragma unroll
    for (int i = 0; i < D; ++i) {
      const int64_t d = lane + 32 * i;
      qv[hh][i] = hh < nh && d < hd ? q.p[t * q.ld + (h + hh) * hd + d] : 0.0f;
      o[hh][i] = 0.0f;
    }
  float m = -FLT_MAX, l = 0.0f;  // head lane / 8's running max and sum
  for (int64_t j0 = first + kKeyGroup * warp; j0 < end; j0 += kKeyGroup * kWarps) {
    float part[32];  // [hh * kKeyGroup + u]
    int64_t slot[kKeyGroup];
#pragma unroll
    for (int u = 0; u < kKeyGroup; ++u) {
      const int64_t j = j0 + u;
      slot[u] = j < end ? slot_of(a, table, j) : 0;
      float kv[D];
#pragma unroll
      for (int i = 0; i < D; ++i)
        kv[i] = j < end && lane + 32 * i < hd ? kc.p[slot[u] * kc.ld + koff + lane + 32 * i] : 0.0f;
#pragma unroll
      for (int hh = 0; hh < kHeads; ++hh) {
        float acc = 0.0f;
#pragma unroll
        for (int i = 0; i < D; ++i) acc = fmaf(qv[hh][i], kv[i], acc);
        part[hh * kKeyGroup + u] = acc;
      }
    }
    fold<32>(part, lane);
    const bool valid = j0 + my_key < end;
    const float sc = valid ? part[0] * a.scale : -FLT_MAX;
    float bm = sc;
#pragma unroll
    for (int off = 1; off < kKeyGroup; off <<= 1) bm = fmaxf(bm, __shfl_xor_sync(0xffffffffu, bm, off));
    // The group's first key is always valid, so bm is a real score.
    const float m_new = l > 0.0f ? fmaxf(m, bm) : bm;
    const float corr = l > 0.0f ? expf(m - m_new) : 0.0f;
    const float p = valid ? expf(sc - m_new) : 0.0f;
    float ps = p;
#pragma unroll
    for (int off = 1; off < kKeyGroup; off <<= 1) ps += __shfl_xor_sync(0xffffffffu, ps, off);
    l = l * corr + ps;
    m = m_new;
#pragma unroll
    for (int hh = 0; hh < kHeads; ++hh) {
      const float c = __shfl_sync(0xffffffffu, corr, hh * kKeyGroup);
#pragma unroll
      for (int i = 0; i < D; ++i) o[hh][i] *= c;
    }
#pragma unroll
    for (int u = 0; u < kKeyGroup; ++u) {
      if (j0 + u >= end) break;
      float vv[D];
#pragma unroll
      for (int i = 0; i < D; ++i)
        vv[i] = lane + 32 * i < hd ? vc.p[slot[u] * vc.ld + koff + lane + 32 * i] : 0.0f;
#pragma unroll
      for (int hh = 0; hh < kHeads; ++hh) {
        const float pu = __shfl_sync(0xffffffffu, p, hh * kKeyGroup + u);
#pragma unroll
        for (int i = 0; i < D; ++i) o[hh][i] = fmaf(pu, vv[i], o[hh][i]);
      }
    }
  }
  // Merge the warps' (max, sum, output) states: warp w's head hh at sm + (w * kHeads + hh) * (hd + 2).
#pragma unroll
  for (int hh = 0; hh < kHeads; ++hh) {
    float* mine = sm + (warp * kHeads + hh) * (hd + 2);
#pragma unroll
    for (int i = 0; i < D; ++i)
      if (lane + 32 * i < hd) mine[lane + 32 * i] = o[hh][i];
    if (lane == hh * kKeyGroup) {
      mine[hd] = l > 0.0f ? m : -FLT_MAX;
      mine[hd + 1] = l;
    }
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < nh * hd; e += blockDim.x) {
    const int64_t hh = e / hd, d = e - hh * hd;
    float mx = -FLT_MAX;
    for (int w = 0; w < kWarps; ++w) {
      const float* st = sm + (w * kHeads + hh) * (hd + 2);
      if (st[hd + 1] > 0.0f) mx = fmaxf(mx, st[hd]);
    }
    float acc = 0.0f, total = 0.0f;
    for (int w = 0; w < kWarps; ++w) {
      const float* st = sm + (w * kHeads + hh) * (hd + 2);
      const float lw = st[hd + 1];
      const float ew = lw > 0.0f ? expf(st[hd] - mx) : 0.0f;
      total += lw * ew;
      acc += st[d] * ew;
    }
    out.p[t * out.ld + (h + hh) * hd + d] = total > 0.0f ? acc / total : 0.0f;
  }
}

// Blocks (token, run of nh query heads of one kv head).
template <int D>
__global__ void __launch_bounds__(kWarps * 32)
    attention_kernel(AttnArgs a, int nh, CFMat q, CFMat kc, CFMat vc, FMat out) {
  extern __shared__ float sm[];
  allow_dependents();
  wait_for_inputs();
  attend_token<D>(a, blockIdx.x, int64_t(blockIdx.y) * nh, nh, q, kc, vc, out, sm);
}

size_t smem_bytes(int64_t hd) { return static_cast<size_t>(kWarps * kHeads * (hd + 2)) * sizeof(float); }

// Steps of fewer than 16 tokens keep a block per head: runs of heads would leave too few blocks to keep
// the SMs loading keys. (A head's result does not depend on nh: each value's butterfly adds the same
// lanes in the same order.)
template <int D>
cudaError_t launch_heads(cudaStream_t s, const AttnArgs& a, CFMat q, CFMat kc, CFMat vc, FMat out) {
  const int64_t group = a.n_heads / a.n_kv_heads;
  const int nh = a.n_tokens < 16 ? 1 : group % 4 == 0 ? 4 : group % 2 == 0 ? 2 : 1;
  const dim3 grid(static_cast<unsigned>(a.n_tokens), static_cast<unsigned>(a.n_heads / nh));
  return launch(attention_kernel<D>, grid, kWarps * 32, smem_bytes(a.head_dim), s, a, nh, q, kc, vc, out);
}

template <int D>
cudaError_t allow_smem() {
  return cudaFuncSetAttribute(attention_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(smem_bytes(32 * D)));
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
