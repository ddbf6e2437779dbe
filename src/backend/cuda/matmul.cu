// Weight-streaming GEMV for small steps, weight decoding for the cuBLAS path, embedding lookup.
#include <algorithm>
#include <climits>
#include <type_traits>

#include "backend/cuda/common.cuh"
#include "backend/cuda/dequant.cuh"
#include "backend/cuda/kernels.h"

namespace ferrum::cuda {

namespace {

constexpr int kGemvWarps = 4;  // one warp per weight row

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

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

// Nibble n (0..15) as a float, exactly: the float with bits 0x4B000000 | n is 2^23 + n (no int-to-float
// conversion, which runs at a quarter of the FMA rate).
__device__ __forceinline__ float nibble_float(uint32_t word, int byte, int shift) {
  return __int_as_float(0x4B000000 | ((word >> (8 * byte + shift)) & 0xF)) - 8388608.0f;
}

// scale_min_k4 on the 12 scale bytes held in registers (bytes 0-7 in lo, 8-11 in hi), so a
// lane-dependent sub-block index needs no local-memory array.
__device__ __forceinline__ void scale_min_k4_words(int j, uint64_t lo, uint32_t hi, int* sc, int* m) {
  auto byte = [&](int k) {
    return static_cast<int>(k < 8 ? (lo >> (8 * k)) & 0xFF : (hi >> (8 * (k - 8))) & 0xFF);
  };
  if (j < 4) {
    *sc = byte(j) & 63;
    *m = byte(j + 4) & 63;
  } else {
    *sc = (byte(j + 4) & 0xF) | ((byte(j - 4) >> 6) << 4);
    *m = (byte(j + 4) >> 4) | ((byte(j) >> 6) << 4);
  }
}

// Lane decoders for gemv_kquant_kernel: 8 lanes share a 256-column block; lane part p (0..7) decodes
// 32 of its weights as 8 runs of 4 consecutive columns, w[k][0..3] at block column base + run(k)
// (decode returns base; run(k) is a constant, so the activation loads share one address).
//
// Q4_K, the bulk of a Q4_K_M model: the lane's 16 of the block's 128 quant bytes come in one 16-byte
// load (group g = p / 2, l0 = 16 (p % 2): low nibbles are sub-block 2g at columns 64g + l0 .. + 15,
// high nibbles sub-block 2g + 1 at 64g + 32 + l0 ..), the block's head (d, dmin, scales) in another;
// runs alternate low and high nibbles of bytes 4i .. 4i + 3. Weights decode exactly as KChunk does
// (d1 * q + n1, rounded once). Needs 16-byte aligned rows.
struct Q4_KLanes {
  static constexpr size_t kBytes = sizeof(BlockQ4_K);
  __device__ static constexpr int run(int k) { return 4 * (k >> 1) + 32 * (k & 1); }
  __device__ __forceinline__ static int decode(const uint8_t* b, int part, float (&w)[8][4]) {
    const int g = part >> 1, l0 = 16 * (part & 1);
    const uint4 head = __ldg(reinterpret_cast<const uint4*>(b));
    const uint4 qv = __ldg(reinterpret_cast<const uint4*>(b + 16 + 16 * part));
    const float d = half_bits_to_float(static_cast<uint16_t>(head.x & 0xFFFF));
    const float dmin = half_bits_to_float(static_cast<uint16_t>(head.x >> 16));
    const uint64_t s_lo = head.y | (uint64_t{head.z} << 32);
    int sc1, m1, sc2, m2;
    scale_min_k4_words(2 * g, s_lo, head.w, &sc1, &m1);
    scale_min_k4_words(2 * g + 1, s_lo, head.w, &sc2, &m2);
    const float d1 = __fmul_rn(d, static_cast<float>(sc1)), n1 = -__fmul_rn(dmin, static_cast<float>(m1));
    const float d2 = __fmul_rn(d, static_cast<float>(sc2)), n2 = -__fmul_rn(dmin, static_cast<float>(m2));
    const uint32_t qw[4] = {qv.x, qv.y, qv.z, qv.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        w[2 * i][e] = __fmaf_rn(d1, nibble_float(qw[i], e, 0), n1);
        w[2 * i + 1][e] = __fmaf_rn(d2, nibble_float(qw[i], e, 4), n2);
      }
    }
    return 64 * g + l0;
  }
};

// Q6_K (output heads, some ffn_down / attn_v of Q4_K_M models): half h = p / 4, l0 = 8 (p % 4); for
// l = l0 .. l0 + 7 the bytes ql[64h + l], ql[64h + 32 + l] and qh[32h + l] give the weights at columns
// 128h + l + 32j (j = 0..3) with scales sc[8h + l0 / 16 + 2j]; runs 2j and 2j + 1 are l0 .. l0 + 3 and
// l0 + 4 .. l0 + 7 of j. Blocks (210 bytes) are only 2-byte aligned, so loads are 16-bit. Weights
// decode exactly as Q6_KChunk does.
struct Q6_KLanes {
  static constexpr size_t kBytes = sizeof(BlockQ6_K);
  __device__ static constexpr int run(int k) { return 32 * (k >> 1) + 4 * (k & 1); }
  __device__ __forceinline__ static int decode(const uint8_t* b, int part, float (&w)[8][4]) {
    const int h = part >> 2, l0 = 8 * (part & 3);
    const uint32_t qa[2] = {ld32_a2(b + 64 * h + l0), ld32_a2(b + 64 * h + l0 + 4)};
    const uint32_t qb[2] = {ld32_a2(b + 64 * h + 32 + l0), ld32_a2(b + 64 * h + 32 + l0 + 4)};
    const uint32_t qh[2] = {ld32_a2(b + 128 + 32 * h + l0), ld32_a2(b + 128 + 32 * h + l0 + 4)};
    const float d = half_bits_to_float(ld16(b + 208));
    const int is = 8 * h + l0 / 16;
    float ds[4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
      ds[j] = __fmul_rn(d, static_cast<float>(static_cast<int8_t>(b[192 + is + 2 * j])));
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int a = byte_of(qa[i / 4], i % 4), c = byte_of(qb[i / 4], i % 4), e = byte_of(qh[i / 4], i % 4);
      const int q1 = ((a & 0xF) | ((e & 3) << 4)) - 32;
      const int q2 = ((c & 0xF) | (((e >> 2) & 3) << 4)) - 32;
      const int q3 = ((a >> 4) | (((e >> 4) & 3) << 4)) - 32;
      const int q4 = ((c >> 4) | (((e >> 6) & 3) << 4)) - 32;
      w[i / 4][i % 4] = __fmul_rn(ds[0], static_cast<float>(q1));
      w[2 + i / 4][i % 4] = __fmul_rn(ds[1], static_cast<float>(q2));
      w[4 + i / 4][i % 4] = __fmul_rn(ds[2], static_cast<float>(q3));
      w[6 + i / 4][i % 4] = __fmul_rn(ds[3], static_cast<float>(q4));
    }
    return 128 * h + l0;
  }
};

// K-quant rows (256-column blocks) for small steps: a warp per row, 8 lanes per block (L decodes a
// lane's 32 weights), so a warp covers 4 blocks a step with far fewer and wider loads per weight than
// the 8-weight chunks of gemv_kernel. Each token's sum runs in the same order for any number of
// tokens. Activations must allow 16-byte loads.
template <class L, int NT>
__global__ void __launch_bounds__(kGemvWarps * 32) gemv_kquant_kernel(WMat w, CFMat x, FMat y) {
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  if (r >= w.rows) return;
  const uint8_t* row = w.p + r * w.row_bytes;
  const int64_t n_blocks = w.cols / 256;
  const int part = lane & 7;
  const int nt = static_cast<int>(x.rows);
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
#pragma unroll 2
  for (int64_t blk = lane >> 3; blk < n_blocks; blk += 4) {
    float wv[8][4];
    const int base = L::decode(row + blk * L::kBytes, part, wv);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t < nt) {
        const float* xr = x.p + t * x.ld + 256 * blk + base;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const float4 a = __ldg(reinterpret_cast<const float4*>(xr + L::run(k)));
          acc[t] = __fmaf_rn(wv[k][0], a.x, acc[t]);
          acc[t] = __fmaf_rn(wv[k][1], a.y, acc[t]);
          acc[t] = __fmaf_rn(wv[k][2], a.z, acc[t]);
          acc[t] = __fmaf_rn(wv[k][3], a.w, acc[t]);
        }
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
// offsets[e] .. offsets[e + 1] eight at a time with the same per-pair arithmetic as a token above.
template <class Q, bool kGateUp>
__global__ void __launch_bounds__(kGemvWarps * 32)
    expert_gemv_kernel(EMat w, EMat u, CFMat x, bool per_token, Routing rt, FMat y, bool wvec, bool xvec) {
  constexpr int NT = kGemvMaxTokens;
  const int lane = threadIdx.x & 31;
  const int64_t e = blockIdx.y, r = int64_t(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
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

__global__ void combine_kernel(CFMat y, Routing rt, FMat out) {
  const int64_t t = blockIdx.x;
  for (int64_t c = threadIdx.x; c < y.cols; c += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = 0; j < rt.k; ++j)
      acc = fmaf(rt.weights[t * rt.k + j], y.p[int64_t(rt.rank[t * rt.k + j]) * y.ld + c], acc);
    out.p[t * out.ld + c] = acc;
  }
}

__device__ __forceinline__ void store_split(float v, __half* hi, __half* lo) {
  const __half h = __float2half_rn(v);
  *hi = h;
  *lo = __float2half_rn(v - __half2float(h));
}

template <class Q>
__global__ void dequant_f16_kernel(WMat w, int64_t r0, __half* __restrict__ hi, __half* __restrict__ lo,
                                   bool wvec) {
  const int64_t r = r0 + blockIdx.x;
  const uint8_t* row = w.p + r * w.row_bytes;
  const int64_t off = int64_t(blockIdx.x) * w.cols;
  const int64_t k = w.cols, n_chunks = (k + 7) / 8;
  for (int64_t c = threadIdx.x; c < n_chunks; c += blockDim.x) {
    float wv[8];
    int64_t a0, b0;
    Q::load(row, c, k, wvec, wv, &a0, &b0);
    for (int i = 0; i < 4; ++i) {
      if (a0 + i < k) store_split(wv[i], hi + off + a0 + i, lo + off + a0 + i);
      if (b0 + i < k) store_split(wv[4 + i], hi + off + b0 + i, lo + off + b0 + i);
    }
  }
}

template <class Q>
__global__ void embed_kernel(WMat table, const int32_t* __restrict__ ids, FMat out, bool wvec) {
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
  const int64_t n = x.rows * x.cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / x.cols, c = i - r * x.cols;
    const float v = x.p[r * x.ld + c];
    if constexpr (kBf16) {
      const __nv_bfloat16 h = __float2bfloat16_rn(v);
      static_cast<__nv_bfloat16*>(hi)[i] = h;
      static_cast<__nv_bfloat16*>(lo)[i] = __float2bfloat16_rn(v - __bfloat162float(h));
    } else {
      const __half h = __float2half_rn(v);
      static_cast<__half*>(hi)[i] = h;
      static_cast<__half*>(lo)[i] = __float2half_rn(v - __half2float(h));
    }
  }
}

// Calls f(std::integral_constant<int, NT>) with the GEMV token count NT (1, 2, 4 or 8) that covers n.
template <class F>
void launch_by_tokens(int64_t n, F&& f) {
  if (n <= 1)
    f(std::integral_constant<int, 1>{});
  else if (n <= 2)
    f(std::integral_constant<int, 2>{});
  else if (n <= 4)
    f(std::integral_constant<int, 4>{});
  else
    f(std::integral_constant<int, 8>{});
}

}  // namespace

bool weight_type_supported(DType t) {
  return dispatch_chunk(t, [](auto) {});
}

cudaError_t gemv(cudaStream_t s, const WMat& w, CFMat x, FMat y) {
  if (w.rows == 0 || x.rows == 0) return cudaSuccess;
  const bool wvec = weight_rows_vectorizable(w);
  const bool xvec = w.cols % 8 == 0 && x.ld % 4 == 0 && aligned16(x.p);
  const unsigned blocks = static_cast<unsigned>((w.rows + kGemvWarps - 1) / kGemvWarps);
  // The K-quant kernels read 256-column blocks with 16-byte activation loads (16-byte rows for Q4_K).
  const bool kvec = xvec && w.cols % 256 == 0;
  if (kvec && w.type == DType::Q4_K && aligned16(w.p) && w.row_bytes % 16 == 0) {
    launch_by_tokens(x.rows, [&](auto nt) {
      gemv_kquant_kernel<Q4_KLanes, decltype(nt)::value><<<blocks, kGemvWarps * 32, 0, s>>>(w, x, y);
    });
    return cudaGetLastError();
  }
  if (kvec && w.type == DType::Q6_K) {
    launch_by_tokens(x.rows, [&](auto nt) {
      gemv_kquant_kernel<Q6_KLanes, decltype(nt)::value><<<blocks, kGemvWarps * 32, 0, s>>>(w, x, y);
    });
    return cudaGetLastError();
  }
  dispatch_chunk(w.type, [&](auto q) {
    launch_by_tokens(x.rows, [&](auto nt) {
      gemv_kernel<decltype(q), decltype(nt)::value><<<blocks, kGemvWarps * 32, 0, s>>>(w, x, y, wvec, xvec);
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
  const dim3 grid(static_cast<unsigned>((w.rows + kGemvWarps - 1) / kGemvWarps),
                  static_cast<unsigned>(r.n_experts));
  dispatch_chunk(w.type, [&](auto q) {
    using Q = decltype(q);
    if (up)
      expert_gemv_kernel<Q, true><<<grid, kGemvWarps * 32, 0, s>>>(w, *up, x, per_token, r, out, wvec, xvec);
    else
      expert_gemv_kernel<Q, false><<<grid, kGemvWarps * 32, 0, s>>>(w, w, x, per_token, r, out, wvec, xvec);
  });
  return cudaGetLastError();
}

cudaError_t moe_route(cudaStream_t s, CFMat logits, bool normalize, const Routing& r) {
  if (r.n_tokens == 0) return cudaSuccess;
  route_kernel<<<static_cast<unsigned>((r.n_tokens + 3) / 4), 128, 0, s>>>(logits, normalize, r);
  group_kernel<<<1, 256, static_cast<size_t>(r.n_experts + 1) * sizeof(int32_t), s>>>(r);
  return cudaGetLastError();
}

cudaError_t moe_combine(cudaStream_t s, CFMat y, const Routing& r, FMat out) {
  if (r.n_tokens == 0) return cudaSuccess;
  combine_kernel<<<static_cast<unsigned>(r.n_tokens), 256, 0, s>>>(y, r, out);
  return cudaGetLastError();
}

cudaError_t dequant_rows_f16(cudaStream_t s, const WMat& w, int64_t r0, int64_t n, void* hi, void* lo) {
  if (n == 0) return cudaSuccess;
  const bool wvec = weight_rows_vectorizable(w);
  dispatch_chunk(w.type, [&](auto q) {
    dequant_f16_kernel<decltype(q)><<<static_cast<unsigned>(n), 128, 0, s>>>(w, r0, static_cast<__half*>(hi),
                                                                             static_cast<__half*>(lo), wvec);
  });
  return cudaGetLastError();
}

cudaError_t split_activations(cudaStream_t s, CFMat x, bool bf16, void* hi, void* lo) {
  const int64_t n = x.rows * x.cols;
  if (n == 0) return cudaSuccess;
  const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 65536));
  if (bf16)
    split_kernel<true><<<blocks, 256, 0, s>>>(x, hi, lo);
  else
    split_kernel<false><<<blocks, 256, 0, s>>>(x, hi, lo);
  return cudaGetLastError();
}

cudaError_t embed(cudaStream_t s, const WMat& table, const int32_t* ids, FMat out) {
  if (out.rows == 0) return cudaSuccess;
  const bool wvec = weight_rows_vectorizable(table);
  dispatch_chunk(table.type, [&](auto q) {
    embed_kernel<decltype(q)><<<static_cast<unsigned>(out.rows), 128, 0, s>>>(table, ids, out, wvec);
  });
  return cudaGetLastError();
}

}  // namespace ferrum::cuda
