// GEMVs for Q4_K, Q6_K, Q8_0, F16 and BF16 rows, the bulk of a model's decode-step reads. The plain
// chunk kernel (matmul.cu) spends several instructions per weight decoding codes to floats (Q8_0's
// int-to-float conversion runs at a quarter of the FMA rate), which caps it near 1 TB/s on Hopper;
// these kernels spend far fewer and keep float32 accuracy:
//
// - Q4_K, Q8_0, F16 and BF16 run on tensor cores (mma.sync m16n8k16, 16-bit inputs, f32 accumulation)
//   against activations split into hi + lo halves (f16: about 22 bits, as the cuBLAS path splits them;
//   bf16 against BF16 weights: about 16 bits). Q8_0, F16 and BF16 weights stream through shared memory
//   (below); Q4_K weights are loaded into registers.
// - Q6_K stays on CUDA cores: the 6-bit code is read as the float32 subnormal q * 2^-149 (exact, no
//   conversion instruction) and multiplied by activations pre-scaled by 2^64, so every product and
//   partial sum is a normal float; sum (q - 32) x = sum q x - 32 sum x. Activations above 2^64 in
//   magnitude would overflow (no model produces them). A block of 128 threads serves several rows, so
//   an activation load is shared by them.
//
// All need subnormals preserved (no -ftz / fast-math for this file). Each token's result is formed by
// the same operations in the same order whatever the number of tokens, so the small-step matmul stays
// batch invariant.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/dequant.cuh"
#include "backend/cuda/gemv.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/mma.cuh"

namespace ferrum::cuda {

namespace {

// ---- Tensor-core GEMVs with weights streamed through shared memory (Q8_0, F16, BF16; gemv.cuh) ----

// Four activations of the lane's token (zeros for a lane past the last token).
__device__ __forceinline__ float4 x_quad(const float* p, bool live) {
  return live ? __ldg(reinterpret_cast<const float4*>(p)) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
}

// Q8_0 step (eight 34-byte blocks per row). In block b, lane (g, c) takes quant bytes 4c .. 4c + 3 (k half
// 0) and 16 + 4c .. + 3 (k half 1) of rows g and g + 8; bytes (0, 1) are MMA k slots (2c, 2c + 1) and bytes
// (2, 3) slots (2c + 8, 2c + 9), and the B fragment is the same four columns of the lane's token. A code q
// is exact in f16: q + 128 (the byte XOR 0x80) under the exponent byte 0x64 is 1024 + q + 128, and one
// half subtraction leaves q. Each block's four MMAs (two k halves, hi and lo activations) accumulate into a
// fresh tile that is scaled by the rows' block scales. With kStaged (up to 4 tokens) each warp first
// stages its step's activations of the NT tokens as f16 hi + lo halves (mma.cuh's layout), once for the 8
// lane groups that share them; otherwise each lane converts its own token's.
template <bool kStaged, int NT>
struct Q8_0GemvStep {
  static constexpr int kTiles = 1;
  static constexpr size_t kXBytes = kStaged ? sizeof(__half) * NT * kTokenHalves : 0;
  CFMat x;
  using XRegs = NoX;
  __device__ NoX load_x(const float*, int64_t, bool) const { return {}; }
  __device__ void stage(int64_t st, unsigned char* xs, NoX) const {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t >= x.rows) break;
      stage_token<false>(x.p + t * x.ld + Q8_0Layout::kCols * st, lane,
                         reinterpret_cast<__half*>(xs) + t * kTokenHalves);
    }
  }
  __device__ __forceinline__ void operator()(float (&tiles)[1][4], const unsigned char* a,
                                             const unsigned char* b, const float* xt, bool live, int64_t,
                                             const unsigned char* xs, NoX) const {
    float(&acc)[4] = tiles[0];
    const int c = threadIdx.x & 3, g = (threadIdx.x & 31) >> 2;
    const __half* staged = reinterpret_cast<const __half*>(xs) + g * kTokenHalves;
#pragma unroll
    for (int blk = 0; blk < 8; ++blk) {
      const unsigned char* pa = a + blk * sizeof(BlockQ8_0);
      const unsigned char* pb = b + blk * sizeof(BlockQ8_0);
      float tile[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int col = 32 * blk + 16 * h + 4 * c;
        XFrag f;
        if constexpr (kStaged) {
          const __half* p = staged + kGroupHalves * (col >> 6) + (col & 63);
          const uint2 xh = live ? *reinterpret_cast<const uint2*>(p) : make_uint2(0, 0);
          const uint2 xl = live ? *reinterpret_cast<const uint2*>(p + kPartHalves) : make_uint2(0, 0);
          f = XFrag{{xh.x, xh.y}, {xl.x, xl.y}};
        } else {
          f = x_frag(x_quad(xt + col, live));
        }
        const int at = 2 + 16 * h + 4 * c;
        const uint32_t qa = q8_0_word(pa + at, blk & 1) ^ 0x80808080u,
                       qb = q8_0_word(pb + at, blk & 1) ^ 0x80808080u;
        const uint32_t a0 = biased_pair(qa, 0x4140, kQ8_0Bias), a2 = biased_pair(qa, 0x4342, kQ8_0Bias);
        const uint32_t a1 = biased_pair(qb, 0x4140, kQ8_0Bias), a3 = biased_pair(qb, 0x4342, kQ8_0Bias);
        mma_f16(tile, a0, a1, a2, a3, f.hi[0], f.hi[1]);
        mma_f16(tile, a0, a1, a2, a3, f.lo[0], f.lo[1]);
      }
      const float da = half_bits_to_float(*reinterpret_cast<const uint16_t*>(pa));
      const float db = half_bits_to_float(*reinterpret_cast<const uint16_t*>(pb));
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[i] = __fmaf_rn(i < 2 ? da : db, tile[i], acc[i]);
    }
  }
};

// F16 / BF16 step (64 columns, 128 bytes per row). Lane (g, c) takes the 8 weights 32p + 8c .. + 7 of
// rows g and g + 8 for each 32-column half p; MMA (p, t) takes weights 4t .. 4t + 3 of them, pairs (0, 1)
// as k slots (2c, 2c + 1) and (2, 3) as (2c + 8, 2c + 9), against the same columns of the lane's token
// (XRegs, loaded ahead). The weights are exact tensor-core operands; activations are split into hi + lo
// halves of the weight's type (about 22 bits for f16, 16 for bf16, as the cuBLAS path splits them).
template <bool kBf16>
struct Float16GemvStep {
  static constexpr int kTiles = 1;
  static constexpr size_t kXBytes = 0;
  struct XRegs {
    float4 v[2][2];  // [p][t]
  };
  __device__ XRegs load_x(const float* xt, int64_t st, bool live) const {
    const int c = threadIdx.x & 3;
    const float* x = xt + Float16Layout::kCols * st;
    XRegs r;
#pragma unroll
    for (int p = 0; p < 2; ++p)
#pragma unroll
      for (int t = 0; t < 2; ++t) r.v[p][t] = x_quad(x + 32 * p + 8 * c + 4 * t, live);
    return r;
  }
  __device__ void stage(int64_t, unsigned char*, const XRegs&) const {}
  __device__ __forceinline__ void operator()(float (&tiles)[1][4], const unsigned char* a,
                                             const unsigned char* b, const float*, bool, int64_t,
                                             const unsigned char*, const XRegs& xr) const {
    float(&acc)[4] = tiles[0];
    const int c = threadIdx.x & 3;
#pragma unroll
    for (int p = 0; p < 2; ++p) {
      const uint4 wa = *reinterpret_cast<const uint4*>(a + 64 * p + 16 * c);
      const uint4 wb = *reinterpret_cast<const uint4*>(b + 64 * p + 16 * c);
#pragma unroll
      for (int t = 0; t < 2; ++t) {
        const XFrag f = x_frag<kBf16>(xr.v[p][t]);
        const uint32_t a0 = (&wa.x)[2 * t], a2 = (&wa.x)[2 * t + 1], a1 = (&wb.x)[2 * t],
                       a3 = (&wb.x)[2 * t + 1];
        if constexpr (kBf16) {
          mma_bf16(acc, a0, a1, a2, a3, f.hi[0], f.hi[1]);
          mma_bf16(acc, a0, a1, a2, a3, f.lo[0], f.lo[1]);
        } else {
          mma_f16(acc, a0, a1, a2, a3, f.hi[0], f.hi[1]);
          mma_f16(acc, a0, a1, a2, a3, f.lo[0], f.lo[1]);
        }
      }
    }
  }
};

// With more than 4 tokens every lane group carries a token, and converting its own activations costs less
// than staging (whose shared memory would halve the blocks an SM holds).
template <int NT>
using Q8_0Exact = Q8_0GemvStep<(NT <= 4), NT>;

template <int NT>
__global__ void __launch_bounds__(kGemvWarps * 32) q8_0_gemv_kernel(Group group, CFMat x) {
  staged_gemv<Q8_0Layout>(group, blockIdx.x, x, 0, Q8_0Exact<NT>{x});
}

// 3 blocks an SM: the activations loaded ahead take 77 registers (at 4 blocks, 64 registers, they spilled
// and BF16 decode measured 6 % slower than without them).
template <bool kBf16>
__global__ void __launch_bounds__(kGemvWarps * 32, 3) float16_gemv_kernel(Group group, CFMat x) {
  staged_gemv<Float16Layout>(group, blockIdx.x, x, 0, Float16GemvStep<kBf16>{});
}

// ---- Q4_K on tensor cores ----
//
// A block of 8 warps computes 16 rows; warp w takes super-blocks w, w + 8, ... and the warps' partial
// sums are added in a fixed order at the end. In a super-block, lane (g, c) owns bytes 32c .. 32c + 31
// of the quants of rows g and g + 8: their low nibbles are sub-block 2c, their high nibbles sub-block
// 2c + 1. MMA j (0..15) takes from every lane the four columns of its bytes 4 (j % 8) .. + 3 (low
// nibbles for j < 8, high after), so each lane's B fragment is the same four columns of its token g.
// Weights are loaded straight into registers, one super-block of 16 rows per warp at a time: staging
// them through shared memory as for Q8_0 measured 10-15 % slower here. Per warp: NT staged tokens
// (mma.cuh's layout).
template <int NT>
constexpr size_t q4k_smem_bytes() {
  return sizeof(__half) * kGemvWarps * NT * kTokenHalves + sizeof(float) * kGemvWarps * 32 * 4;
}

// Stages columns [col0, col0 + 256) of each token for this warp.
template <int NT, bool kSums>
__device__ __forceinline__ void stage_x(CFMat x, int nt, int64_t col0, int lane, __half* sm) {
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    if (t >= nt) break;
    stage_token<kSums>(x.p + t * x.ld + col0, lane, sm + t * kTokenHalves);
  }
}

template <int NT>
__global__ void __launch_bounds__(kGemvWarps * 32) q4k_mma_kernel(Group group, CFMat x) {
  extern __shared__ __align__(16) unsigned char smem[];
  __half* staged = reinterpret_cast<__half*>(smem);
  float* red = reinterpret_cast<float*>(smem + sizeof(__half) * kGemvWarps * NT * kTokenHalves);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
  int64_t row0;
  const int mi = block_rows(group, 16, blockIdx.x, &row0);
  const WMat w = group.w[mi];
  const FMat y = group.y[mi];
  const int64_t rows[2] = {min(row0 + g, w.rows - 1), min(row0 + g + 8, w.rows - 1)};
  const int64_t n_blocks = w.cols / 256;
  __half* sm = staged + warp * NT * kTokenHalves;
  const __half* tok = sm + g * kTokenHalves;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  wait_for_inputs();
  const int nt = static_cast<int>(x.rows);
  const bool live = g < nt;  // lane group g carries token g
  for (int64_t sb = warp; sb < n_blocks; sb += kGemvWarps) {
    Q4KStep wt;
    wt.load(w, rows, sb, c);
    __syncwarp();  // the previous super-block's fragment reads are done
    stage_x<NT, true>(x, nt, 256 * sb, lane, sm);
    __syncwarp();
    int sc[2][2], m[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint64_t lo = wt.head[i].y | (uint64_t{wt.head[i].z} << 32);
      scale_min_k4_words(2 * c, lo, wt.head[i].w, &sc[i][0], &m[i][0]);
      scale_min_k4_words(2 * c + 1, lo, wt.head[i].w, &sc[i][1], &m[i][1]);
    }
    float acc_q[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int nib = 0; nib < 2; ++nib) {  // low nibbles (sub-block 2c), then high (2c + 1)
      uint4 xh[4], xl[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const __half* p = tok + kGroupHalves * c + 32 * nib + 8 * i;
        xh[i] = live ? *reinterpret_cast<const uint4*>(p) : make_uint4(0, 0, 0, 0);
        xl[i] = live ? *reinterpret_cast<const uint4*>(p + kPartHalves) : make_uint4(0, 0, 0, 0);
      }
      const __half2 sa = __half2half2(__int2half_rn(sc[0][nib])),
                    sb8 = __half2half2(__int2half_rn(sc[1][nib]));
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const uint32_t wa = (&wt.q[0][j >> 2].x)[j & 3], wb = (&wt.q[1][j >> 2].x)[j & 3];
        const uint32_t na = (wa >> (4 * nib)) & 0x0F0F0F0Fu, nb = (wb >> (4 * nib)) & 0x0F0F0F0Fu;
        // byte perms 0x4140 / 0x4342: bytes (0, 1) / (2, 3) of the word into the low bytes of two halves
        const uint32_t a0 = q4_pair(na, 0x4140, sa), a2 = q4_pair(na, 0x4342, sa);
        const uint32_t a1 = q4_pair(nb, 0x4140, sb8), a3 = q4_pair(nb, 0x4342, sb8);
        const uint32_t* h = &xh[j >> 1].x;
        const uint32_t* l = &xl[j >> 1].x;
        const int o = 2 * (j & 1);
        mma_f16(acc_q, a0, a1, a2, a3, h[o], h[o + 1]);
        mma_f16(acc_q, a0, a1, a2, a3, l[o], l[o + 1]);
      }
    }
    // Min term: k slots (2c, 2c + 1) and (2c + 8, 2c + 9) pair the mins of sub-blocks 2c, 2c + 1 with
    // the hi and the lo halves of their activation sums.
    float acc_m[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const uint32_t ma = half2_bits(__halves2half2(__int2half_rn(m[0][0]), __int2half_rn(m[0][1])));
    const uint32_t mb = half2_bits(__halves2half2(__int2half_rn(m[1][0]), __int2half_rn(m[1][1])));
    const uint32_t s_hi = live ? *reinterpret_cast<const uint32_t*>(tok + kSumsAt + 2 * c) : 0u;
    const uint32_t s_lo = live ? *reinterpret_cast<const uint32_t*>(tok + kSumsAt + 8 + 2 * c) : 0u;
    mma_f16(acc_m, ma, mb, ma, mb, s_hi, s_lo);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t h0 = wt.head[i >> 1].x;
      const float d = __fmul_rn(half_bits_to_float(static_cast<uint16_t>(h0 & 0xFFFF)), 0x1p24f);
      const float dmin = half_bits_to_float(static_cast<uint16_t>(h0 >> 16));
      acc[i] = __fmaf_rn(-dmin, acc_m[i], __fmaf_rn(d, acc_q[i], acc[i]));
    }
  }
  reduce_store(red, acc, row0, w, nt, y);
}

// ---- Q6_K on CUDA cores ----
//
// A block of 128 threads computes q6_rows(NT) rows (fewer for more tokens, to bound registers): thread part p
// = tid % 8 of super-block slot tid / 8 decodes 32 weights of each row (half h = p / 4, l0 = 8 (p % 4): for l
// = l0 .. l0 + 7 the bytes ql[64h + l], ql[64h + 32 + l] and qh[32h + l] hold columns 128h + l + 32j, j =
// 0..3, of sub-blocks 8h + l0 / 16 + 2j). Blocks (210 bytes) are only 2-byte aligned, so loads are 16-bit.
__host__ __device__ constexpr int q6_rows(int nt) { return nt == 1 ? 4 : 2; }
constexpr float kXScale = 0x1p64f;        // activations are multiplied by this ...
constexpr float kProductScale = 0x1p85f;  // ... so sums of q * 2^-149 * x * 2^64 are scaled back by 2^85

__device__ __forceinline__ float subnormal_byte(uint32_t word, int e) {
  return __int_as_float(static_cast<int>(__byte_perm(word, 0, 0x4440 | e)));
}

struct Q6Row {
  uint32_t q[4][2];  // 6-bit codes of runs j (0..3), bytes of two words each
  float d[4];        // d * sub-block scale of run j
};

__device__ __forceinline__ void q6_load(const uint8_t* b, int part, Q6Row& r) {
  const int h = part >> 2, l0 = 8 * (part & 3);
  const float d = half_bits_to_float(ld16(b + 208));
  const int is = 8 * h + l0 / 16;
#pragma unroll
  for (int j = 0; j < 4; ++j)
    r.d[j] = __fmul_rn(d, static_cast<float>(static_cast<int8_t>(b[192 + is + 2 * j])));
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const uint32_t qa = ld32_a2(b + 64 * h + l0 + 4 * i), qb = ld32_a2(b + 64 * h + 32 + l0 + 4 * i);
    const uint32_t qh = ld32_a2(b + 128 + 32 * h + l0 + 4 * i);
    r.q[0][i] = (qa & 0x0F0F0F0Fu) | ((qh << 4) & 0x30303030u);
    r.q[1][i] = (qb & 0x0F0F0F0Fu) | ((qh << 2) & 0x30303030u);
    r.q[2][i] = ((qa >> 4) & 0x0F0F0F0Fu) | (qh & 0x30303030u);
    r.q[3][i] = ((qb >> 4) & 0x0F0F0F0Fu) | ((qh >> 2) & 0x30303030u);
  }
}

// xs: the thread's 32 activations (run j, word i, byte e) times kXScale; sum[j]: run j's plain sum.
__device__ __forceinline__ float q6_dot(const Q6Row& r, const float (&xs)[4][2][4], const float (&sum)[4]) {
  float v = 0.0f;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    float a = 0.0f;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) a = __fmaf_rn(subnormal_byte(r.q[j][i], e), xs[j][i][e], a);
    v = __fmaf_rn(r.d[j], __fmaf_rn(-32.0f, sum[j], __fmul_rn(a, kProductScale)), v);
  }
  return v;
}

template <int NT>
__global__ void __launch_bounds__(128, 4) q6k_rows_kernel(Group group, CFMat x) {
  constexpr int kQ6Rows = q6_rows(NT);
  __shared__ float red[4][kQ6Rows * NT];
  const int tid = threadIdx.x, part = tid & 7, lane = tid & 31, warp = tid >> 5;
  int64_t row0;
  const int mi = block_rows(group, kQ6Rows, blockIdx.x, &row0);
  const WMat w = group.w[mi];
  const int64_t n_blocks = w.cols / 256;
  Q6Row rw[kQ6Rows];
  const auto load_rows = [&](int64_t blk) {
#pragma unroll
    for (int r = 0; r < kQ6Rows; ++r) {
      const int64_t row = min(row0 + r, w.rows - 1);
      q6_load(w.p + row * w.row_bytes + blk * sizeof(BlockQ6_K), part, rw[r]);
    }
  };
  // Single tokens load their first block's rows while the previous kernel finishes (with more tokens
  // the rows held across the wait spill registers).
  constexpr bool kEarly = NT == 1;
  if (kEarly && (tid >> 3) < n_blocks) load_rows(tid >> 3);
  wait_for_inputs();
  const FMat y = group.y[mi];
  const int nt = static_cast<int>(x.rows);
  const int base = 128 * (part >> 2) + 8 * (part & 3);
  float acc[kQ6Rows][NT];
#pragma unroll
  for (int r = 0; r < kQ6Rows; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
  for (int64_t blk = tid >> 3; blk < n_blocks; blk += 16) {
    if (!kEarly || blk != (tid >> 3)) load_rows(blk);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t >= nt) break;
      const float* xr = x.p + t * x.ld + 256 * blk + base;
      float xs[4][2][4], sum[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        sum[j] = 0.0f;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const float4 a = __ldg(reinterpret_cast<const float4*>(xr + 32 * j + 4 * i));
          sum[j] += (a.x + a.y) + (a.z + a.w);
          xs[j][i][0] = a.x * kXScale, xs[j][i][1] = a.y * kXScale;
          xs[j][i][2] = a.z * kXScale, xs[j][i][3] = a.w * kXScale;
        }
      }
#pragma unroll
      for (int r = 0; r < kQ6Rows; ++r) acc[r][t] += q6_dot(rw[r], xs, sum);
    }
  }
#pragma unroll
  for (int r = 0; r < kQ6Rows; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float v = warp_sum(acc[r][t]);
      if (lane == 0) red[warp][r * NT + t] = v;
    }
  __syncthreads();
  if (tid < kQ6Rows * NT) {
    const int r = tid / NT, t = tid % NT;
    if (t < nt && row0 + r < w.rows)
      y.p[t * y.ld + row0 + r] = (red[0][tid] + red[1][tid]) + (red[2][tid] + red[3][tid]);
  }
}

template <int NT>
cudaError_t allow_kquant_smem() {
  const cudaError_t e = cudaFuncSetAttribute(q4k_mma_kernel<NT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(q4k_smem_bytes<NT>()));
  return e != cudaSuccess ? e : allow_staged_smem<Q8_0Layout, Q8_0Exact<NT>>(q8_0_gemv_kernel<NT>);
}

}  // namespace

bool kquant_gemv_applies(const WMat& w, CFMat x) {
  // All read 16-byte activation runs; Q4_K, Q8_0, F16 and BF16 16-byte weight rows.
  if (x.ld % 4 != 0 || !aligned16(x.p) || x.rows > kGemvMaxTokens) return false;
  const bool rows16 = aligned16(w.p) && w.row_bytes % 16 == 0;
  switch (w.type) {
    case DType::Q4_K:
    case DType::Q8_0:
      return rows16 && w.cols % 256 == 0;
    case DType::F16:
    case DType::BF16:
      return rows16 && w.cols % Float16Layout::kCols == 0;
    case DType::Q6_K:
      return w.cols % 256 == 0;
    default:
      return false;
  }
}

cudaError_t kquant_gemv(cudaStream_t s, const WMat& w, CFMat x, FMat y) {
  return kquant_gemv_group(s, x, &w, &y, 1, GemvInt8{});
}

// One launch per weight type present.
cudaError_t kquant_gemv_group(cudaStream_t s, CFMat x, const WMat* w, const FMat* y, int n, GemvInt8 int8) {
  if (x.rows == 0) return cudaSuccess;
  cudaError_t e = cudaSuccess;
  bool quantized = false;  // the activations rounded for the 8-bit-activation GEMVs, once per group
  launch_by_tokens(std::min(x.rows, kGemvMaxTokens), [&](auto nt) {
    constexpr int NT = decltype(nt)::value;
    for (DType type : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::F16, DType::BF16}) {
      const int64_t block_rows = type == DType::Q6_K ? q6_rows(NT) : 16;
      Group group{};
      unsigned blocks = 0;
      for (int i = 0; i < n; ++i) {
        if (w[i].type != type || w[i].rows == 0) continue;
        blocks += static_cast<unsigned>((w[i].rows + block_rows - 1) / block_rows);
        group.w[group.n] = w[i];
        group.y[group.n] = y[i];
        group.end[group.n++] = blocks;
      }
      if (group.n == 0 || e != cudaSuccess) continue;
      const unsigned threads = kGemvWarps * 32;
      // The caller checked each matrix, and for Q4_K and Q8_0 kquant_gemv_applies asks of the weights
      // what int8_gemv_applies asks, so the first matrix decides for its type.
      if (int8.on && int8_gemv_applies(group.w[0], x)) {
        if (!quantized) e = int8_gemv_quantize(s, x, int8.scratch);
        quantized = true;
        if (e == cudaSuccess) e = int8_gemv(s, type, blocks, group, x, int8.scratch, int8.sm_count);
        continue;
      }
      if (x.rows > kGemvMaxTokens) {  // only int8_gemv_applies products run more tokens
        e = cudaErrorInvalidValue;
        continue;
      }
      switch (type) {
        case DType::Q4_K:
          e = launch(q4k_mma_kernel<NT>, blocks, threads, q4k_smem_bytes<NT>(), s, group, x);
          break;
        case DType::Q8_0:
          e = launch(q8_0_gemv_kernel<NT>, blocks, threads, staged_smem<Q8_0Layout, Q8_0Exact<NT>>(), s,
                     group, x);
          break;
        case DType::F16:
          e = launch(float16_gemv_kernel<false>, blocks, threads,
                     staged_smem<Float16Layout, Float16GemvStep<false>>(), s, group, x);
          break;
        case DType::BF16:
          e = launch(float16_gemv_kernel<true>, blocks, threads,
                     staged_smem<Float16Layout, Float16GemvStep<true>>(), s, group, x);
          break;
        default:
          e = launch(q6k_rows_kernel<NT>, blocks, 128, 0, s, group, x);
      }
    }
  });
  return e;
}

cudaError_t init_kquant_gemv() {
  for (cudaError_t e :
       {allow_kquant_smem<1>(), allow_kquant_smem<2>(), allow_kquant_smem<4>(), allow_kquant_smem<8>(),
        allow_staged_smem<Float16Layout, Float16GemvStep<false>>(float16_gemv_kernel<false>),
        allow_staged_smem<Float16Layout, Float16GemvStep<true>>(float16_gemv_kernel<true>), init_int8_gemv()})
    if (e != cudaSuccess) return e;
  return cudaSuccess;
}

}  // namespace ferrum::cuda
