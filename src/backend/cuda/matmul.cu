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

__device__ __forceinline__ float silu_times(float g, float u) { return g / (1.0f + expf(-g)) * u; }

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

// Counting sort of the pairs by expert, in one block: thread per expert, pairs in increasing order.
__global__ void group_kernel(Routing rt) {
  allow_dependents();
  wait_for_inputs();
  extern __shared__ int32_t start[];  // [n_experts + 1]
  const int64_t n_pairs = rt.n_tokens * rt.k;
  for (int64_t e = threadIdx.x; e < rt.n_experts; e += blockDim.x) {
    int32_t c = 0;
    for (int64_t p = 0; p < n_pairs; ++p) c += rt.ids[p] == e;
    start[e + 1] = c;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    start[0] = 0;
    for (int64_t e = 0; e < rt.n_experts; ++e) start[e + 1] += start[e];
    for (int64_t e = 0; e <= rt.n_experts; ++e) rt.offsets[e] = start[e];
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < rt.n_experts; e += blockDim.x) {
    int32_t pos = start[e];
    for (int64_t p = 0; p < n_pairs; ++p) {
      if (rt.ids[p] != e) continue;
      rt.order[pos] = static_cast<int32_t>(p);
      rt.rank[p] = pos++;
    }
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
  launch(group_kernel, 1, 256, static_cast<size_t>(r.n_experts + 1) * sizeof(int32_t), s, r);
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
