// Row and elementwise ops: norms, residual adds, activations, RoPE, KV writes, row gathers.
#include <algorithm>

#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.h"

namespace ferrum::cuda {

namespace {

constexpr int kRowThreads = 256;

// Elementwise kernels walk rows x cols with a grid-stride loop over the flat index.
__device__ __forceinline__ void flat_rc(int64_t i, int64_t cols, int64_t* r, int64_t* c) {
  *r = i / cols;
  *c = i - *r * cols;
}

int elementwise_blocks(int64_t n) { return static_cast<int>(std::min<int64_t>((n + 255) / 256, 65536)); }

// Loops that store into memory the compiler cannot prove apart from what they load run one load
// latency per iteration; the row kernels below therefore load a thread's elements into registers
// before storing any of them.

// RMSNorm of one row per block, optionally after a residual add (x += y, written back). A thread
// holds its kPer elements (columns threadIdx.x + j * blockDim.x) in registers.
constexpr int kNormThreads = 1024;
constexpr int kNormMaxPer = 16;  // rows up to 16384 columns

template <int kPer>
__global__ void rms_norm_kernel(FMat x, CFMat y, const float* __restrict__ w, float eps, FMat out) {
  allow_dependents();
  // The norm weights are loaded while the previous kernel finishes (a load latency off each norm).
  float wv[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
    wv[j] = i < x.cols ? __ldg(w + i) : 0.0f;
  }
  wait_for_inputs();
  __shared__ float red[32];
  float* xr = x.p + blockIdx.x * x.ld;
  const float* yr = y.p ? y.p + blockIdx.x * y.ld : nullptr;
  float* o = out.p + blockIdx.x * out.ld;
  float v[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
    v[j] = i < x.cols ? xr[i] : 0.0f;
  }
  if (yr) {
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
      if (i < x.cols) v[j] += yr[i];
    }
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
      if (i < x.cols) xr[i] = v[j];
    }
  }
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kPer; ++j) ss = fmaf(v[j], v[j], ss);
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(x.cols) + eps);
  // out may alias x: every element was read before.
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
    if (i < x.cols) o[i] = v[j] * inv * wv[j];
  }
}

// Copies n floats, four per thread at a time (all four loads before the stores).
__device__ __forceinline__ void copy_row(const float* src, float* dst, int64_t n) {
  for (int64_t i0 = threadIdx.x; i0 < n; i0 += 4 * int64_t(blockDim.x)) {
    float v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t i = i0 + u * int64_t(blockDim.x);
      v[u] = i < n ? src[i] : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t i = i0 + u * int64_t(blockDim.x);
      if (i < n) dst[i] = v[u];
    }
  }
}

__global__ void layer_norm_kernel(CFMat x, const float* __restrict__ w, const float* __restrict__ b,
                                  float eps, FMat out) {
  allow_dependents();
  wait_for_inputs();
  __shared__ float red[32];
  const float* xr = x.p + blockIdx.x * x.ld;
  float* o = out.p + blockIdx.x * out.ld;
  const float n = static_cast<float>(x.cols);
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < x.cols; i += blockDim.x) s += xr[i];
  const float mean = block_sum(s, red) / n;
  float v = 0.0f;
  for (int64_t i = threadIdx.x; i < x.cols; i += blockDim.x) {
    const float d = xr[i] - mean;
    v = fmaf(d, d, v);
  }
  const float inv = 1.0f / sqrtf(block_sum(v, red) / n + eps);
  for (int64_t i = threadIdx.x; i < x.cols; i += blockDim.x) o[i] = (xr[i] - mean) * inv * w[i] + b[i];
}

__global__ void add_kernel(FMat x, CFMat y) {
  allow_dependents();
  wait_for_inputs();
  const int64_t n = x.rows * x.cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r, c;
    flat_rc(i, x.cols, &r, &c);
    x.p[r * x.ld + c] += y.p[r * y.ld + c];
  }
}

__global__ void add_bias_kernel(FMat x, const float* __restrict__ bias) {
  allow_dependents();
  wait_for_inputs();
  const int64_t n = x.rows * x.cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r, c;
    flat_rc(i, x.cols, &r, &c);
    x.p[r * x.ld + c] += bias[c];
  }
}

template <Glu kind>
__global__ void glu_kernel(CFMat gate, CFMat up, FMat out) {
  allow_dependents();
  wait_for_inputs();
  const int64_t n = gate.rows * gate.cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r, c;
    flat_rc(i, gate.cols, &r, &c);
    const float g = gate.p[r * gate.ld + c];
    float a;
    if constexpr (kind == Glu::Silu) {
      a = g / (1.0f + expf(-g));
    } else {
      a = 0.5f * g * (1.0f + tanhf(0.7978845608f * (g + 0.044715f * g * g * g)));
    }
    out.p[r * out.ld + c] = a * up.p[r * up.ld + c];
  }
}

__global__ void gelu_erf_kernel(FMat x) {
  allow_dependents();
  wait_for_inputs();
  const int64_t n = x.rows * x.cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r, c;
    flat_rc(i, x.cols, &r, &c);
    const float v = x.p[r * x.ld + c];
    x.p[r * x.ld + c] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
  }
}

__global__ void scale_kernel(FMat x, float s) {
  allow_dependents();
  wait_for_inputs();
  const int64_t n = x.rows * x.cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r, c;
    flat_rc(i, x.cols, &r, &c);
    x.p[r * x.ld + c] *= s;
  }
}

__global__ void softcap_kernel(FMat x, float cap) {
  allow_dependents();
  wait_for_inputs();
  const int64_t n = x.rows * x.cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r, c;
    flat_rc(i, x.cols, &r, &c);
    x.p[r * x.ld + c] = cap * tanhf(x.p[r * x.ld + c] / cap);
  }
}

__global__ void gather_rows_kernel(CFMat x, const int32_t* __restrict__ rows, FMat out) {
  allow_dependents();
  wait_for_inputs();
  copy_row(x.p + int64_t(rows[blockIdx.x]) * x.ld, out.p + blockIdx.x * out.ld, x.cols);
}

// One block per row: strided scans, then warp and block reductions of the best (value, column) pair,
// a larger value first, then a lower column (a total order, so the reduction order cannot change the
// winner), and of whether any value was a NaN or +inf. With `vec` (16-byte aligned rows) each thread
// has four 16-byte loads in flight: with one 4-byte load at a time a 152k-column row took 65 µs (ncu,
// H200), bound by load latency.
__global__ void argmax_rows_kernel(CFMat x, int32_t* __restrict__ out, bool vec) {
  __shared__ float best_v[32];
  __shared__ int64_t best_i[32];
  allow_dependents();
  wait_for_inputs();
  const float* row = x.p + int64_t(blockIdx.x) * x.ld;
  float bv = -INFINITY;
  int64_t bi = x.cols;
  bool bad = false;
  const auto take = [&](float v, int64_t i) {
    if (v > bv || (v == bv && i < bi)) bv = v, bi = i;
  };
  const auto consider = [&](float v, int64_t i) {
    bad |= isnan(v) || v == INFINITY;
    take(v, i);
  };
  const int64_t n4 = vec ? x.cols / 4 : 0;
  const float4* row4 = reinterpret_cast<const float4*>(row);
  for (int64_t j0 = threadIdx.x; j0 < n4; j0 += 4 * int64_t(blockDim.x)) {
    float4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t j = j0 + u * int64_t(blockDim.x);
      if (j < n4) v[u] = __ldg(row4 + j);
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t j = j0 + u * int64_t(blockDim.x);
      if (j >= n4) break;
      consider(v[u].x, 4 * j);
      consider(v[u].y, 4 * j + 1);
      consider(v[u].z, 4 * j + 2);
      consider(v[u].w, 4 * j + 3);
    }
  }
  for (int64_t i = 4 * n4 + threadIdx.x; i < x.cols; i += blockDim.x) consider(row[i], i);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  const auto reduce = [&] {
    for (int o = 16; o > 0; o >>= 1) {
      const float v = __shfl_xor_sync(0xffffffffu, bv, o);
      take(v, __shfl_xor_sync(0xffffffffu, bi, o));
    }
  };
  reduce();
  if (lane == 0) best_v[warp] = bv, best_i[warp] = bi;
  bad = __syncthreads_or(bad);
  if (warp != 0) return;
  bv = lane < n_warps ? best_v[lane] : -INFINITY;
  bi = lane < n_warps ? best_i[lane] : x.cols;
  reduce();
  if (lane == 0) out[blockIdx.x] = bad || bv == -INFINITY ? -1 : static_cast<int32_t>(bi);
}

// One block per token: cos/sin per frequency once (in double, as the reference), then every head.
__global__ void rope_kernel(FMat x, int64_t n_heads, int64_t head_dim, int64_t half, bool neox,
                            const float* __restrict__ inv_freq, const int32_t* __restrict__ positions) {
  allow_dependents();
  wait_for_inputs();
  extern __shared__ float cs[];  // [half] cos, then [half] sin
  float* sn = cs + half;
  const double pos = positions[blockIdx.x];
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    double s, c;
    sincos(pos * double(inv_freq[i]), &s, &c);
    cs[i] = static_cast<float>(c);
    sn[i] = static_cast<float>(s);
  }
  __syncthreads();
  float* row = x.p + blockIdx.x * x.ld;
  const int64_t pairs = n_heads * half;
  for (int64_t j0 = threadIdx.x; j0 < pairs; j0 += 4 * int64_t(blockDim.x)) {
    float x0[4], x1[4];
    int64_t ia[4], ib[4], fi[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t j = j0 + u * int64_t(blockDim.x);
      const int64_t h = j / half, i = j - h * half;
      fi[u] = i;
      ia[u] = h * head_dim + (neox ? i : 2 * i);
      ib[u] = h * head_dim + (neox ? i + half : 2 * i + 1);
      x0[u] = j < pairs ? row[ia[u]] : 0.0f;
      x1[u] = j < pairs ? row[ib[u]] : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      if (j0 + u * int64_t(blockDim.x) >= pairs) continue;
      row[ia[u]] = x0[u] * cs[fi[u]] - x1[u] * sn[fi[u]];
      row[ib[u]] = x0[u] * sn[fi[u]] + x1[u] * cs[fi[u]];
    }
  }
}

__global__ void kv_write_kernel(FMat kc, FMat vc, CFMat k, CFMat v, const int32_t* __restrict__ slots) {
  allow_dependents();
  wait_for_inputs();
  const int64_t slot = slots[blockIdx.x];
  copy_row(k.p + blockIdx.x * k.ld, kc.p + slot * kc.ld, k.cols);
  copy_row(v.p + blockIdx.x * v.ld, vc.p + slot * vc.ld, v.cols);
}

// Grid (token, group of 4 heads), a warp per head, the heads being q's, k's, then v's: a q or k head is
// loaded into registers, RMS-normed (as rms_norm_kernel), staged in shared memory and rotated (as
// rope_kernel) back into place, k's also into its cache row; a v head is copied to its cache row. Every
// warp has one head, so a decode step's whole layer is one round trip to memory (a block per token that
// looped over the heads measured slower than the three separate kernels).
constexpr int kRopeWarps = 4;
constexpr int kRopeMaxPer = kMaxHeadDim / 32;

__global__ void __launch_bounds__(kRopeWarps * 32) rope_and_cache_kernel(RopeCacheArgs a) {
  allow_dependents();
  wait_for_inputs();
  extern __shared__ float sm[];  // [half] cos, [half] sin, then a head_dim buffer per warp
  const int64_t half = a.rope_dim / 2, hd = a.head_dim, t = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t h = int64_t(blockIdx.y) * kRopeWarps + warp, slot = a.slots[t];
  const int64_t n_qk = a.n_heads + a.n_kv_heads;
  const bool is_q = h < a.n_heads, is_v = h >= n_qk, live = h < n_qk + a.n_kv_heads;
  const int64_t kh = is_v ? h - n_qk : h - a.n_heads;
  // The head's row: q's and k's are rotated in place, v's only read.
  float* row = !live || is_v ? nullptr : is_q ? a.q.p + t * a.q.ld + h * hd : a.k.p + t * a.k.ld + kh * hd;
  const float* src = is_v ? a.v.p + t * a.v.ld + kh * hd : row;
  float v[kRopeMaxPer];
#pragma unroll
  for (int j = 0; j < kRopeMaxPer; ++j) {
    const int64_t i = lane + 32 * j;
    v[j] = live && i < hd ? src[i] : 0.0f;
  }
  float* cs = sm;
  float* sn = sm + half;
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    double s, c;
    sincos(double(a.positions[t]) * double(a.inv_freq[i]), &s, &c);
    cs[i] = static_cast<float>(c);
    sn[i] = static_cast<float>(s);
  }
  __syncthreads();
  if (!live) return;
  if (is_v) {
    float* dst = a.v_cache.p + slot * a.v_cache.ld + kh * hd;
#pragma unroll
    for (int j = 0; j < kRopeMaxPer; ++j)
      if (lane + 32 * j < hd) dst[lane + 32 * j] = v[j];
    return;
  }
  const float* norm = is_q ? a.q_norm : a.k_norm;
  if (norm) {
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < kRopeMaxPer; ++j) ss = fmaf(v[j], v[j], ss);
    const float inv = 1.0f / sqrtf(warp_sum(ss) / static_cast<float>(hd) + a.eps);
#pragma unroll
    for (int j = 0; j < kRopeMaxPer; ++j)
      if (lane + 32 * j < hd) v[j] = v[j] * inv * norm[lane + 32 * j];
  }
  float* buf = sm + 2 * half + warp * hd;
#pragma unroll
  for (int j = 0; j < kRopeMaxPer; ++j)
    if (lane + 32 * j < hd) buf[lane + 32 * j] = v[j];
  __syncwarp();
  float* cache = is_q ? nullptr : a.k_cache.p + slot * a.k_cache.ld + kh * hd;
  for (int64_t j = lane; j < hd; j += 32) {
    float r = buf[j];
    if (j < a.rope_dim) {
      const int64_t i = a.neox ? (j < half ? j : j - half) : j / 2;
      const float x0 = buf[a.neox ? i : 2 * i], x1 = buf[a.neox ? i + half : 2 * i + 1];
      const bool first = a.neox ? j < half : (j & 1) == 0;
      r = first ? x0 * cs[i] - x1 * sn[i] : x0 * sn[i] + x1 * cs[i];
    }
    row[j] = r;
    if (cache) cache[j] = r;
  }
}

}  // namespace

cudaError_t rope_and_cache(cudaStream_t s, const RopeCacheArgs& a) {
  if (a.q.rows == 0) return cudaSuccess;
  if (a.head_dim > kMaxHeadDim) return cudaErrorInvalidValue;
  const int64_t heads = a.n_heads + 2 * a.n_kv_heads;
  const dim3 grid(static_cast<unsigned>(a.q.rows),
                  static_cast<unsigned>((heads + kRopeWarps - 1) / kRopeWarps));
  const size_t smem = sizeof(float) * static_cast<size_t>(a.rope_dim / 2 * 2 + kRopeWarps * a.head_dim);
  launch(rope_and_cache_kernel, grid, kRopeWarps * 32, smem, s, a);
  return cudaGetLastError();
}

cudaError_t rms_norm(cudaStream_t s, FMat x, CFMat y, const float* w, float eps, FMat out) {
  if (x.rows == 0) return cudaSuccess;
  const int threads = static_cast<int>(std::min<int64_t>(kNormThreads, (x.cols + 31) / 32 * 32));
  const int64_t per = (x.cols + threads - 1) / threads;
  if (per > kNormMaxPer) return cudaErrorInvalidValue;
  const unsigned blocks = static_cast<unsigned>(x.rows);
  if (per <= 1)
    launch(rms_norm_kernel<1>, blocks, threads, 0, s, x, y, w, eps, out);
  else if (per <= 2)
    launch(rms_norm_kernel<2>, blocks, threads, 0, s, x, y, w, eps, out);
  else if (per <= 4)
    launch(rms_norm_kernel<4>, blocks, threads, 0, s, x, y, w, eps, out);
  else if (per <= 8)
    launch(rms_norm_kernel<8>, blocks, threads, 0, s, x, y, w, eps, out);
  else
    launch(rms_norm_kernel<kNormMaxPer>, blocks, threads, 0, s, x, y, w, eps, out);
  return cudaGetLastError();
}

cudaError_t layer_norm(cudaStream_t s, CFMat x, const float* w, const float* b, float eps, FMat out) {
  if (x.rows == 0) return cudaSuccess;
  launch(layer_norm_kernel, static_cast<unsigned>(x.rows), kRowThreads, 0, s, x, w, b, eps, out);
  return cudaGetLastError();
}

cudaError_t add(cudaStream_t s, FMat x, CFMat y) {
  if (x.rows * x.cols == 0) return cudaSuccess;
  launch(add_kernel, elementwise_blocks(x.rows * x.cols), 256, 0, s, x, y);
  return cudaGetLastError();
}

cudaError_t add_bias(cudaStream_t s, FMat x, const float* bias) {
  if (x.rows * x.cols == 0) return cudaSuccess;
  launch(add_bias_kernel, elementwise_blocks(x.rows * x.cols), 256, 0, s, x, bias);
  return cudaGetLastError();
}

cudaError_t glu(cudaStream_t s, Glu kind, CFMat gate, CFMat up, FMat out) {
  if (gate.rows * gate.cols == 0) return cudaSuccess;
  const int blocks = elementwise_blocks(gate.rows * gate.cols);
  if (kind == Glu::Silu)
    launch(glu_kernel<Glu::Silu>, blocks, 256, 0, s, gate, up, out);
  else
    launch(glu_kernel<Glu::GeluTanh>, blocks, 256, 0, s, gate, up, out);
  return cudaGetLastError();
}

cudaError_t gelu_erf(cudaStream_t s, FMat x) {
  if (x.rows * x.cols == 0) return cudaSuccess;
  launch(gelu_erf_kernel, elementwise_blocks(x.rows * x.cols), 256, 0, s, x);
  return cudaGetLastError();
}

cudaError_t scale(cudaStream_t s, FMat x, float v) {
  if (x.rows * x.cols == 0) return cudaSuccess;
  launch(scale_kernel, elementwise_blocks(x.rows * x.cols), 256, 0, s, x, v);
  return cudaGetLastError();
}

cudaError_t softcap(cudaStream_t s, FMat x, float v) {
  if (x.rows * x.cols == 0) return cudaSuccess;
  launch(softcap_kernel, elementwise_blocks(x.rows * x.cols), 256, 0, s, x, v);
  return cudaGetLastError();
}

cudaError_t gather_rows(cudaStream_t s, CFMat x, const int32_t* rows, FMat out) {
  if (out.rows == 0) return cudaSuccess;
  launch(gather_rows_kernel, static_cast<unsigned>(out.rows), kRowThreads, 0, s, x, rows, out);
  return cudaGetLastError();
}

cudaError_t argmax_rows(cudaStream_t s, CFMat x, int32_t* out) {
  if (x.rows == 0) return cudaSuccess;
  const bool vec = x.ld % 4 == 0 && aligned16(x.p);
  launch(argmax_rows_kernel, static_cast<unsigned>(x.rows), 1024, 0, s, x, out, vec);
  return cudaGetLastError();
}

cudaError_t rope(cudaStream_t s, FMat x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, bool neox,
                 const float* inv_freq, const int32_t* positions) {
  if (x.rows == 0 || rope_dim == 0) return cudaSuccess;
  const int64_t half = rope_dim / 2;
  launch(rope_kernel, static_cast<unsigned>(x.rows), 256, static_cast<size_t>(2 * half) * sizeof(float), s, x,
         n_heads, head_dim, half, neox, inv_freq, positions);
  return cudaGetLastError();
}

cudaError_t kv_write(cudaStream_t s, FMat k_cache, FMat v_cache, CFMat k, CFMat v, const int32_t* slots) {
  if (k.rows == 0) return cudaSuccess;
  launch(kv_write_kernel, static_cast<unsigned>(k.rows), kRowThreads, 0, s, k_cache, v_cache, k, v, slots);
  return cudaGetLastError();
}

}  // namespace ferrum::cuda
