// GEMVs for Q4_K, Q6_K and Q8_0 rows, the bulk of a quantized model's decode-step reads. The plain
// chunk kernel (matmul.cu) spends several instructions per weight decoding codes to floats (Q8_0's
// int-to-float conversion runs at a quarter of the FMA rate), which caps it near 1 TB/s on Hopper;
// these kernels spend far fewer and keep float32 accuracy:
//
// - Q4_K and Q8_0 run on tensor cores (mma.sync m16n8k16, f16 inputs, f32 accumulation) against
//   activations split into f16 hi + lo halves (about 22 bits, as the cuBLAS path splits them). A
//   4-bit Q4_K code q times its 6-bit sub-block scale sc is at most 945, so q * sc * 2^-24 is an exact
//   f16 subnormal built with one byte permute and one half multiply, and the min term,
//   dmin * sum_s m_s * sum(x over sub-block s), is one more MMA over the 8 sub-block sums. A Q8_0 code
//   is exact in f16 and each block's tile is scaled by its d in fp32.
// - Q6_K stays on CUDA cores: the 6-bit code is read as the float32 subnormal q * 2^-149 (exact, no
//   conversion instruction) and multiplied by activations pre-scaled by 2^64, so every product and
//   partial sum is a normal float; sum (q - 32) x = sum q x - 32 sum x. Activations above 2^64 in
//   magnitude would overflow (no model produces them). A block of 128 threads serves several rows, so
//   an activation load is shared by them.
//
// All need subnormals preserved (no -ftz / fast-math for this file). Each token's result is formed by
// the same operations in the same order whatever the number of tokens, so the small-step matmul stays
// batch invariant.
#include <cuda_fp16.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/dequant.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/mma.cuh"

namespace ferrum::cuda {

namespace {

// ---- Q4_K on tensor cores ----
//
// A block of 8 warps computes 16 rows; warp w takes super-blocks w, w + 8, ... and the warps' partial
// sums are added in a fixed order at the end. In a super-block, lane (g, c) owns bytes 32c .. 32c + 31
// of the quants of rows g and g + 8: their low nibbles are sub-block 2c, their high nibbles sub-block
// 2c + 1. MMA j (0..15) takes from every lane the four columns of its bytes 4 (j % 8) .. + 3 (low
// nibbles for j < 8, high after), so each lane's B fragment is the same four columns of its token g.
constexpr int kQ4Warps = 8;
// Per warp: NT staged tokens (mma.cuh's layout).

template <int NT>
constexpr size_t mma_smem_bytes() {
  return sizeof(__half) * kQ4Warps * NT * kTokenHalves + sizeof(float) * kQ4Warps * 32 * 4;
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

// The end of every tensor-core GEMV: adds the 8 warps' tiles in a fixed order and stores rows
// row0 + g and row0 + g + 8 for tokens 2c and 2c + 1.
__device__ __forceinline__ void reduce_store(float* red, const float (&acc)[4], int64_t row0, const WMat& w,
                                             int nt, FMat y) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
#pragma unroll
  for (int i = 0; i < 4; ++i) red[(warp * 32 + lane) * 4 + i] = acc[i];
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float v = red[lane * 4 + i];
#pragma unroll
    for (int k = 1; k < kQ4Warps; ++k) v += red[(k * 32 + lane) * 4 + i];
    const int t = 2 * c + (i & 1);
    const int64_t r = row0 + g + 8 * (i >> 1);
    if (t < nt && r < w.rows) y.p[t * y.ld + r] = v;
  }
}

// Up to kMaxGemvGroup matrices of one type in one launch: matrix i's row blocks are blocks end[i - 1] ..
// end[i] - 1.
struct Group {
  WMat w[kMaxGemvGroup];
  FMat y[kMaxGemvGroup];
  unsigned end[kMaxGemvGroup];
  int n;
};

// This block's matrix, and the first of the n_rows rows it computes. The GEMVs leave the trigger of the
// next kernel to their exit (common.cuh): an explicit one after the main loop measured slightly slower.
__device__ __forceinline__ int block_rows(const Group& group, int64_t n_rows, int64_t* row0) {
  int mi = 0;
  while (mi + 1 < group.n && blockIdx.x >= group.end[mi]) ++mi;
  *row0 = int64_t(blockIdx.x - (mi > 0 ? group.end[mi - 1] : 0u)) * n_rows;
  return mi;
}

template <int NT>
__global__ void __launch_bounds__(kQ4Warps * 32) q4k_mma_kernel(Group group, CFMat x) {
  extern __shared__ __align__(16) unsigned char smem[];
  __half* staged = reinterpret_cast<__half*>(smem);
  float* red = reinterpret_cast<float*>(smem + sizeof(__half) * kQ4Warps * NT * kTokenHalves);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
  int64_t row0;
  const int mi = block_rows(group, 16, &row0);
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
  for (int64_t sb = warp; sb < n_blocks; sb += kQ4Warps) {
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

// ---- Q8_0 on tensor cores ----
//
// The Q4_K tiling with 256-column steps of 8 blocks: in block b, lane (g, c) owns quant bytes 4c .. 4c + 3
// (MMA 2b) and 16 + 4c .. 16 + 4c + 3 (MMA 2b + 1) of rows g and g + 8. A code q is exact in f16:
// q + 128 (the byte XOR 0x80) under the exponent byte 0x64 is 1024 + q + 128, and one half subtraction
// leaves q. Each block's four MMAs (two k halves, hi and lo activations) accumulate into a fresh tile
// that is scaled by the rows' block scales. Rows must be 16-byte aligned, so a step (8 x 34 bytes) is,
// and odd blocks' quants are 4-byte aligned (even ones 2-byte).
template <int NT>
__global__ void __launch_bounds__(kQ4Warps * 32) q8_0_mma_kernel(Group group, CFMat x) {
  extern __shared__ __align__(16) unsigned char smem[];
  __half* staged = reinterpret_cast<__half*>(smem);
  float* red = reinterpret_cast<float*>(smem + sizeof(__half) * kQ4Warps * NT * kTokenHalves);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
  int64_t row0;
  const int mi = block_rows(group, 16, &row0);
  wait_for_inputs();
  const WMat w = group.w[mi];
  const FMat y = group.y[mi];
  const int64_t rows[2] = {min(row0 + g, w.rows - 1), min(row0 + g + 8, w.rows - 1)};
  const int64_t n_steps = w.cols / 256;
  const int nt = static_cast<int>(x.rows);
  __half* sm = staged + warp * NT * kTokenHalves;
  const __half* tok = sm + g * kTokenHalves;
  const bool live = g < nt;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t st = warp; st < n_steps; st += kQ4Warps) {
    Q8_0Step wt;
    wt.load(w, rows, st, c);
    __syncwarp();  // the previous step's fragment reads are done
    stage_x<NT, false>(x, nt, 256 * st, lane, sm);
    __syncwarp();
#pragma unroll
    for (int b = 0; b < 8; ++b) {
      float tile[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int col = 32 * b + 16 * h + 4 * c;
        const __half* p = tok + kGroupHalves * (col >> 6) + (col & 63);
        const uint2 xh = live ? *reinterpret_cast<const uint2*>(p) : make_uint2(0, 0);
        const uint2 xl = live ? *reinterpret_cast<const uint2*>(p + kPartHalves) : make_uint2(0, 0);
        const uint32_t a0 = biased_pair(wt.q[0][b][h], 0x4140, kQ8_0Bias),
                       a2 = biased_pair(wt.q[0][b][h], 0x4342, kQ8_0Bias);
        const uint32_t a1 = biased_pair(wt.q[1][b][h], 0x4140, kQ8_0Bias),
                       a3 = biased_pair(wt.q[1][b][h], 0x4342, kQ8_0Bias);
        mma_f16(tile, a0, a1, a2, a3, xh.x, xh.y);
        mma_f16(tile, a0, a1, a2, a3, xl.x, xl.y);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[i] = __fmaf_rn(wt.d[i >> 1][b], tile[i], acc[i]);
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
  const int mi = block_rows(group, kQ6Rows, &row0);
  wait_for_inputs();
  const WMat w = group.w[mi];
  const FMat y = group.y[mi];
  const int64_t n_blocks = w.cols / 256;
  const int nt = static_cast<int>(x.rows);
  const int base = 128 * (part >> 2) + 8 * (part & 3);
  float acc[kQ6Rows][NT];
#pragma unroll
  for (int r = 0; r < kQ6Rows; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
  for (int64_t blk = tid >> 3; blk < n_blocks; blk += 16) {
    Q6Row rw[kQ6Rows];
#pragma unroll
    for (int r = 0; r < kQ6Rows; ++r) {
      const int64_t row = min(row0 + r, w.rows - 1);
      q6_load(w.p + row * w.row_bytes + blk * sizeof(BlockQ6_K), part, rw[r]);
    }
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
cudaError_t allow_mma_smem() {
  const auto allow = [](auto kernel, size_t bytes) {
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  };
  const cudaError_t e = allow(q4k_mma_kernel<NT>, mma_smem_bytes<NT>());
  return e != cudaSuccess ? e : allow(q8_0_mma_kernel<NT>, mma_smem_bytes<NT>());
}

}  // namespace

bool kquant_gemv_applies(const WMat& w, CFMat x) {
  // All read 256-column steps and 16-byte activation runs; Q4_K and Q8_0 also 16-byte weight rows.
  if (w.cols % 256 != 0 || x.ld % 4 != 0 || !aligned16(x.p) || x.rows > kGemvMaxTokens) return false;
  if (w.type == DType::Q4_K || w.type == DType::Q8_0) return aligned16(w.p) && w.row_bytes % 16 == 0;
  return w.type == DType::Q6_K;
}

cudaError_t kquant_gemv(cudaStream_t s, const WMat& w, CFMat x, FMat y) {
  return kquant_gemv_group(s, x, &w, &y, 1);
}

// One launch per weight type present.
cudaError_t kquant_gemv_group(cudaStream_t s, CFMat x, const WMat* w, const FMat* y, int n) {
  if (x.rows == 0) return cudaSuccess;
  cudaError_t e = cudaSuccess;
  launch_by_tokens(x.rows, [&](auto nt) {
    constexpr int NT = decltype(nt)::value;
    for (DType type : {DType::Q4_K, DType::Q6_K, DType::Q8_0}) {
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
      if (type == DType::Q4_K)
        e = launch(q4k_mma_kernel<NT>, blocks, kQ4Warps * 32, mma_smem_bytes<NT>(), s, group, x);
      else if (type == DType::Q8_0)
        e = launch(q8_0_mma_kernel<NT>, blocks, kQ4Warps * 32, mma_smem_bytes<NT>(), s, group, x);
      else
        e = launch(q6k_rows_kernel<NT>, blocks, 128, 0, s, group, x);
    }
  });
  return e;
}

cudaError_t init_kquant_gemv() {
  for (cudaError_t e : {allow_mma_smem<1>(), allow_mma_smem<2>(), allow_mma_smem<4>(), allow_mma_smem<8>()})
    if (e != cudaSuccess) return e;
  return cudaSuccess;
}

}  // namespace ferrum::cuda
