// Weight-streaming GEMV for small steps, weight decoding for the cuBLAS path, embedding lookup.
#include <algorithm>
#include <climits>

#include "backend/cuda/common.cuh"
#include "backend/cuda/dequant.cuh"
#include "backend/cuda/kernels.h"

namespace ferrum::cuda {

namespace {

constexpr int kGemvWarps = 4;  // one warp per weight row

// Whether float-type weight rows allow 16-byte loads of every chunk.
bool weight_rows_vectorizable(const WMat& w) {
  return w.cols % 8 == 0 && w.row_bytes % 16 == 0 && aligned16(w.p);
}

__device__ __forceinline__ void load_x(const float* xr, int64_t a0, int64_t b0, int64_t k, bool vec,
                                       float (&xv)[8]) {
  if (vec) {
    const float4 u = __ldg(reinterpret_cast<const float4*>(xr + a0));
    const float4 v = __ldg(reinterpret_cast<const float4*>(xr + b0));
    xv[0] = u.x, xv[1] = u.y, xv[2] = u.z, xv[3] = u.w, xv[4] = v.x, xv[5] = v.y, xv[6] = v.z, xv[7] = v.w;
  } else {
    for (int i = 0; i < 4; ++i) {
      xv[i] = a0 + i < k ? __ldg(xr + a0 + i) : 0.0f;
      xv[4 + i] = b0 + i < k ? __ldg(xr + b0 + i) : 0.0f;
    }
  }
}

// Each lane walks chunks lane, lane + 32, ... of its warp's row and keeps one running sum per
// token; the warp then reduces each sum. A token's sum is formed by the same operations in the same
// order whatever NT and the number of tokens are, so its result is independent of the batch.
template <class Q, int NT>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_kernel(WMat w, CFMat x, FMat y, bool wvec, bool xvec) {
  wait_for_inputs();
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  if (r >= w.rows) return;
  const uint8_t* row = w.p + r * w.row_bytes;
  const int64_t k = w.cols, n_chunks = (k + 7) / 8;
  const int nt = static_cast<int>(x.rows);
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
#pragma unroll 2
  for (int64_t c = lane; c < n_chunks; c += 32) {
    float wv[8];
    int64_t a0, b0;
    Q::load(row, c, k, wvec, wv, &a0, &b0);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t < nt) {
        float xv[8];
        load_x(x.p + t * x.ld, a0, b0, k, xvec, xv);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[t] = __fmaf_rn(wv[i], xv[i], acc[t]);
      }
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    if (t < nt) {
      const float v = warp_sum(acc[t]);
      if (lane == 0) y.p[t * y.ld + r] = v;
    }
  }
}

// The grouped-expert form of gemv_kernel: block row (blockIdx.y) = expert e, which takes its pairs
// offsets[e] .. offsets[e + 1] eight at a time with the same per-pair arithmetic as a token above
// (so a pair's result does not depend on by_pair).
template <class Q, bool kGateUp>
__global__ void __launch_bounds__(kGemvWarps * 32)
    expert_gemv_kernel(EMat w, EMat u, CFMat x, bool per_token, Routing rt, FMat y, bool wvec, bool xvec,
                       bool by_pair) {
  wait_for_inputs();  // the trigger is left to the exit, as in the other GEMVs
  constexpr int NT = kGemvMaxTokens;
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  // by_pair: block row y serves the expert of grouped pair y if y is that expert's first pair (steps
  // with fewer pairs than experts, e.g. decode: a grid row per expert would be mostly empty blocks).
  int64_t e = blockIdx.y;
  if (by_pair) {
    e = rt.ids[rt.order[blockIdx.y]];
    if (rt.offsets[e] != int64_t(blockIdx.y)) return;
  }
  const int64_t first = rt.offsets[e], count = rt.offsets[e + 1] - first;
  if (count == 0 || r >= w.rows) return;
  const uint8_t* wrow = static_cast<const uint8_t*>(w.mats[e]) + r * w.row_bytes;
  const uint8_t* urow = kGateUp ? static_cast<const uint8_t*>(u.mats[e]) + r * u.row_bytes : nullptr;
  const int64_t k = w.cols, n_chunks = (k + 7) / 8;
  for (int64_t g0 = 0; g0 < count; g0 += NT) {
    const int nt = count - g0 < NT ? static_cast<int>(count - g0) : NT;
    const float* xr[NT];
    float acc[NT], acc_u[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const int64_t i = first + g0 + (t < nt ? t : 0);
      xr[t] = x.p + (per_token ? rt.order[i] / rt.k : i) * x.ld;
      acc[t] = acc_u[t] = 0.0f;
    }
#pragma unroll 2
    for (int64_t c = lane; c < n_chunks; c += 32) {
      float wv[8], uv[8];
      int64_t a0, b0;
      Q::load(wrow, c, k, wvec, wv, &a0, &b0);
      if constexpr (kGateUp) Q::load(urow, c, k, wvec, uv, &a0, &b0);
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        if (t < nt) {
          float xv[8];
          load_x(xr[t], a0, b0, k, xvec, xv);
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            acc[t] = __fmaf_rn(wv[i], xv[i], acc[t]);
            if constexpr (kGateUp) acc_u[t] = __fmaf_rn(uv[i], xv[i], acc_u[t]);
          }
        }
      }
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t < nt) {
        const float v = warp_sum(acc[t]);
        const float vu = kGateUp ? warp_sum(acc_u[t]) : 0.0f;
        if (lane == 0) y.p[(first + g0 + t) * y.ld + r] = kGateUp ? silu_times(v, vu) : v;
      }
    }
  }
}

// One warp per token: the k largest logits by repeated warp argmax (ties to the lower expert id),
// then their softmax weights. Expert e is lane e % 32, bit e / 32 of that lane's `taken`.
__global__ void route_kernel(CFMat logits, bool normalize, Routing rt) {
  allow_dependents();
  wait_for_inputs();
  const int lane = threadIdx.x & 31;
  const int64_t t = int64_t(blockIdx.x) * 4 + (threadIdx.x >> 5);
  if (t >= rt.n_tokens) return;
  const float* l = logits.p + t * logits.ld;
  const int n_exp = static_cast<int>(rt.n_experts);
  uint32_t taken = 0;
  float mx = 0.0f, chosen = 0.0f;
  for (int j = 0; j < rt.k; ++j) {
    float best = -INFINITY;
    int best_e = INT_MAX;
    for (int e = lane; e < n_exp; e += 32) {
      const float v = l[e];
      if (!((taken >> (e / 32)) & 1u) && (v > best || (v == best && e < best_e))) best = v, best_e = e;
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, o);
      const int oe = __shfl_xor_sync(0xffffffffu, best_e, o);
      if (ov > best || (ov == best && oe < best_e)) best = ov, best_e = oe;
    }
    if (lane == best_e % 32) taken |= 1u << (best_e / 32);
    if (j == 0) mx = best;
    chosen += expf(best - mx);
    if (lane == 0) {
      rt.ids[t * rt.k + j] = best_e;
      rt.weights[t * rt.k + j] = best;
    }
  }
  float sum = chosen;
  if (!normalize) {
    float part = 0.0f;
    for (int e = lane; e < n_exp; e += 32) part += expf(l[e] - mx);
    sum = warp_sum(part);
  }
  __syncwarp();
  for (int j = lane; j < rt.k; j += 32) rt.weights[t * rt.k + j] = expf(rt.weights[t * rt.k + j] - mx) / sum;
}

// Counting sort of the pairs by expert, in one block: the first `warps` warps each take a contiguous
// range of pairs and count its experts (shared-memory histograms, one a warp); offsets[e] and each
// warp's first place for expert e follow from prefix sums; then each warp walks its range 32 pairs at a
// time, and the lanes holding the same expert (__match_any_sync) take consecutive places in lane order.
// (A thread per expert walking every pair took 337 µs for 4 096 pairs and 128 experts; a ballot per
// expert and 32 pairs, 136 µs: both issue-bound on one SM.)
constexpr int kGroupThreads = 1024;
constexpr size_t kGroupSmemBytes = 48 << 10;
// Warps with a histogram of n_experts counts, within the shared memory (with the n_experts + 1 offsets).
int group_warps(int64_t n_experts) {
  const int64_t fit = static_cast<int64_t>(kGroupSmemBytes / sizeof(int32_t)) / n_experts - 2;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(kGroupThreads / 32, fit)));
}

__global__ void __launch_bounds__(kGroupThreads) group_kernel(Routing rt, int warps) {
  allow_dependents();
  wait_for_inputs();
  extern __shared__ int32_t smem[];
  const int n_exp = static_cast<int>(rt.n_experts), lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int32_t* hist = smem;                   // [warps][n_exp]: counts, then each warp's next place
  int32_t* start = smem + warps * n_exp;  // [n_exp + 1]
  const int64_t n_pairs = rt.n_tokens * rt.k, per = (n_pairs + warps - 1) / warps;
  const int64_t p_begin = min(warp * per, n_pairs),
                p_end = warp < warps ? min(p_begin + per, n_pairs) : p_begin;
  for (int i = threadIdx.x; i < warps * n_exp; i += blockDim.x) hist[i] = 0;
  __syncthreads();
  int32_t* mine = hist + warp * n_exp;
  for (int64_t p = p_begin + lane; p < p_end; p += 32) atomicAdd(&mine[rt.ids[p]], 1);
  __syncthreads();
  // start[e + 1] = pairs of expert e, then an inclusive scan by warp 0, 32 experts at a time.
  for (int e = threadIdx.x; e < n_exp; e += blockDim.x) {
    int32_t total = 0;
    for (int w = 0; w < warps; ++w) total += hist[w * n_exp + e];
    start[e + 1] = total;
  }
  __syncthreads();
  if (warp == 0) {
    int32_t carry = 0;
    for (int e0 = 0; e0 < n_exp; e0 += 32) {
      int32_t v = e0 + lane < n_exp ? start[e0 + lane + 1] : 0;
      for (int o = 1; o < 32; o <<= 1) {
        const int32_t up = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += up;
      }
      if (e0 + lane < n_exp) start[e0 + lane + 1] = carry + v;
      carry += __shfl_sync(0xffffffffu, v, 31);
    }
    if (lane == 0) start[0] = 0;
  }
  __syncthreads();
  for (int e = threadIdx.x; e <= n_exp; e += blockDim.x) rt.offsets[e] = start[e];
  for (int e = threadIdx.x; e < n_exp; e += blockDim.x) {
    int32_t place = start[e];
    for (int w = 0; w < warps; ++w) {
      const int32_t c = hist[w * n_exp + e];
      hist[w * n_exp + e] = place;
      place += c;
    }
  }
  __syncthreads();
  const unsigned below = (1u << lane) - 1u;
  for (int64_t p0 = p_begin; p0 < p_end; p0 += 32) {
    const int64_t p = p0 + lane;
    const bool valid = p < p_end;
    const int32_t id = valid ? rt.ids[p] : -1 - lane;  // invalid lanes match no one
    const unsigned peers = __match_any_sync(0xffffffffu, id);
    if (valid) {
      const int32_t pos = mine[id] + __popc(peers & below);
      rt.order[pos] = static_cast<int32_t>(p);
      rt.rank[p] = pos;
    }
    __syncwarp();
    if (valid && lane == __ffs(peers) - 1) mine[id] += __popc(peers);
    __syncwarp();
  }
}

// Block (token t, 256 columns): a column a thread (one block a token looping over the columns took
// 17 µs for 2048 columns, k = 8: a chain of dependent loads per column).
__global__ void combine_kernel(CFMat y, Routing rt, FMat out) {
  allow_dependents();
  wait_for_inputs();
  const int64_t t = blockIdx.x, c = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c >= y.cols) return;
  float acc = 0.0f;
  for (int64_t j = 0; j < rt.k; ++j)
    acc = fmaf(rt.weights[t * rt.k + j], y.p[int64_t(rt.rank[t * rt.k + j]) * y.ld + c], acc);
  out.p[t * out.ld + c] = acc;
}

// Columns at .. at + 3 (those below `left`) of w ~= hi + lo, or of w ~= hi when lo is null; four halves
// go out as one 8-byte store where aligned.
__device__ __forceinline__ void store_quad(const float* v, int64_t at, int64_t left, __half* __restrict__ hi,
                                           __half* __restrict__ lo) {
  if (left >= 4 && at % 4 == 0) {
    const __half2 h01 = __floats2half2_rn(v[0], v[1]), h23 = __floats2half2_rn(v[2], v[3]);
    *reinterpret_cast<__half2*>(hi + at) = h01;
    *reinterpret_cast<__half2*>(hi + at + 2) = h23;
    if (lo) {
      const float2 b01 = __half22float2(h01), b23 = __half22float2(h23);
      *reinterpret_cast<__half2*>(lo + at) = __floats2half2_rn(v[0] - b01.x, v[1] - b01.y);
      *reinterpret_cast<__half2*>(lo + at + 2) = __floats2half2_rn(v[2] - b23.x, v[3] - b23.y);
    }
    return;
  }
  for (int i = 0; i < 4 && i < left; ++i) {
    const __half h = __float2half_rn(v[i]);
    hi[at + i] = h;
    if (lo) lo[at + i] = __float2half_rn(v[i] - __half2float(h));
  }
}

template <class Q>
__global__ void dequant_f16_kernel(WMat w, int64_t r0, __half* __restrict__ hi, __half* __restrict__ lo,
                                   bool wvec) {
  allow_dependents();
  wait_for_inputs();
  const int64_t r = r0 + blockIdx.x;
  const uint8_t* row = w.p + r * w.row_bytes;
  const int64_t off = int64_t(blockIdx.x) * w.cols;
  const int64_t k = w.cols, n_chunks = (k + 7) / 8;
  for (int64_t c = threadIdx.x; c < n_chunks; c += blockDim.x) {
    float wv[8];
    int64_t a0, b0;
    Q::load(row, c, k, wvec, wv, &a0, &b0);
    store_quad(wv, off + a0, k - a0, hi, lo);
    store_quad(wv + 4, off + b0, k - b0, hi, lo);
  }
}

template <class Q>
__global__ void embed_kernel(WMat table, const int32_t* __restrict__ ids, FMat out, bool wvec) {
  allow_dependents();
  wait_for_inputs();
  const uint8_t* row = table.p + int64_t(ids[blockIdx.x]) * table.row_bytes;
  float* o = out.p + int64_t(blockIdx.x) * out.ld;
  const int64_t k = table.cols, n_chunks = (k + 7) / 8;
  for (int64_t c = threadIdx.x; c < n_chunks; c += blockDim.x) {
    float wv[8];
    int64_t a0, b0;
    Q::load(row, c, k, wvec, wv, &a0, &b0);
    for (int i = 0; i < 4; ++i) {
      if (a0 + i < k) o[a0 + i] = wv[i];
      if (b0 + i < k) o[b0 + i] = wv[4 + i];
    }
  }
}

template <bool kBf16>
__global__ void split_kernel(CFMat x, void* hi, void* lo) {
  allow_dependents();
  wait_for_inputs();
  const int64_t n = x.rows * x.cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / x.cols, c = i - r * x.cols;
    const float v = x.p[r * x.ld + c];
    if constexpr (kBf16) {
      const __nv_bfloat16 h = __float2bfloat16_rn(v);
      static_cast<__nv_bfloat16*>(hi)[i] = h;
      if (lo) static_cast<__nv_bfloat16*>(lo)[i] = __float2bfloat16_rn(v - __bfloat162float(h));
    } else {
      const __half h = __float2half_rn(v);
      static_cast<__half*>(hi)[i] = h;
      if (lo) static_cast<__half*>(lo)[i] = __float2half_rn(v - __half2float(h));
    }
  }
}

}  // namespace

bool weight_type_supported(DType t) {
  return dispatch_chunk(t, [](auto) {});
}

cudaError_t gemv(cudaStream_t s, const WMat& w, CFMat x, FMat y) {
  if (w.rows == 0 || x.rows == 0) return cudaSuccess;
  if (kquant_gemv_applies(w, x)) return kquant_gemv(s, w, x, y);
  const bool wvec = weight_rows_vectorizable(w);
  const bool xvec = w.cols % 8 == 0 && x.ld % 4 == 0 && aligned16(x.p);
  const unsigned blocks = static_cast<unsigned>((w.rows + kGemvWarps - 1) / kGemvWarps);
  dispatch_chunk(w.type, [&](auto q) {
    launch_by_tokens(x.rows, [&](auto nt) {
      launch(gemv_kernel<decltype(q), decltype(nt)::value>, blocks, kGemvWarps * 32, 0, s, w, x, y, wvec,
             xvec);
    });
  });
  return cudaGetLastError();
}

cudaError_t expert_gemv(cudaStream_t s, const EMat& w, const EMat* up, CFMat x, bool per_token,
                        const Routing& r, FMat out) {
  if (r.n_tokens == 0 || w.rows == 0) return cudaSuccess;
  // Expert matrices are separate allocations or slices of one stack; rows of float types are
  // 16-byte aligned when every row length in bytes is (cudaMalloc bases are 256-byte aligned).
  const bool wvec = w.cols % 8 == 0 && w.row_bytes % 16 == 0;
  const bool xvec = w.cols % 8 == 0 && x.ld % 4 == 0 && aligned16(x.p);
  const int64_t n_pairs = r.n_tokens * r.k;
  const bool by_pair = n_pairs < r.n_experts;
  const dim3 grid(static_cast<unsigned>((w.rows + kGemvWarps - 1) / kGemvWarps),
                  static_cast<unsigned>(by_pair ? n_pairs : r.n_experts));
  dispatch_chunk(w.type, [&](auto q) {
    using Q = decltype(q);
    if (up)
      launch(expert_gemv_kernel<Q, true>, grid, kGemvWarps * 32, 0, s, w, *up, x, per_token, r, out, wvec,
             xvec, by_pair);
    else
      launch(expert_gemv_kernel<Q, false>, grid, kGemvWarps * 32, 0, s, w, w, x, per_token, r, out, wvec,
             xvec, by_pair);
  });
  return cudaGetLastError();
}

cudaError_t moe_route(cudaStream_t s, CFMat logits, bool normalize, const Routing& r) {
  if (r.n_tokens == 0) return cudaSuccess;
  launch(route_kernel, static_cast<unsigned>((r.n_tokens + 3) / 4), 128, 0, s, logits, normalize, r);
  const int warps = group_warps(r.n_experts);
  launch(group_kernel, 1, kGroupThreads,
         (static_cast<size_t>(warps) * r.n_experts + r.n_experts + 1) * sizeof(int32_t), s, r, warps);
  return cudaGetLastError();
}

cudaError_t moe_combine(cudaStream_t s, CFMat y, const Routing& r, FMat out) {
  if (r.n_tokens == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(r.n_tokens), static_cast<unsigned>((y.cols + 255) / 256));
  launch(combine_kernel, grid, 256, 0, s, y, r, out);
  return cudaGetLastError();
}

cudaError_t dequant_rows_f16(cudaStream_t s, const WMat& w, int64_t r0, int64_t n, void* hi, void* lo) {
  if (n == 0) return cudaSuccess;
  const bool wvec = weight_rows_vectorizable(w);
  dispatch_chunk(w.type, [&](auto q) {
    launch(dequant_f16_kernel<decltype(q)>, static_cast<unsigned>(n), 128, 0, s, w, r0,
           static_cast<__half*>(hi), static_cast<__half*>(lo), wvec);
  });
  return cudaGetLastError();
}

cudaError_t split_activations(cudaStream_t s, CFMat x, bool bf16, void* hi, void* lo) {
  const int64_t n = x.rows * x.cols;
  if (n == 0) return cudaSuccess;
  const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 65536));
  if (bf16)
    launch(split_kernel<true>, blocks, 256, 0, s, x, hi, lo);
  else
    launch(split_kernel<false>, blocks, 256, 0, s, x, hi, lo);
  return cudaGetLastError();
}

cudaError_t embed(cudaStream_t s, const WMat& table, const int32_t* ids, FMat out) {
  if (out.rows == 0) return cudaSuccess;
  const bool wvec = weight_rows_vectorizable(table);
  dispatch_chunk(table.type, [&](auto q) {
    launch(embed_kernel<decltype(q)>, static_cast<unsigned>(out.rows), 128, 0, s, table, ids, out, wvec);
  });
  return cudaGetLastError();
}

}  // namespace ferrum::cuda
