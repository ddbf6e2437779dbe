// Q4_K, Q6_K and Q8_0 matmuls of batched steps (kGemvMaxTokens + 1 .. kKquantMaxTokens tokens: decode
// steps of many sequences) on tensor cores. The small-step GEMVs (gemv_kquant.cu) stage the
// activations once per 16 rows, which for 64 tokens would read about 28 times the weight bytes from
// L2; these kernels stage them once per 128 rows. Weights are decoded in registers into exact f16
// tensor-core operands and multiplied (mma.sync m16n8k16, f32 accumulation) against activations split
// into f16 hi + lo halves (about 22 bits), so results keep float32 accuracy:
//
// - Q4_K: as in gemv_kquant.cu, q * sc * 2^-24 is an exact f16 subnormal and the min term is one more
//   MMA over the 8 sub-block sums.
// - Q6_K: a code minus 32 is exact in f16; each 16-column sub-block is one MMA k-step whose fresh
//   tile is scaled by d * sc of its rows in fp32.
// - Q8_0: a code is exact in f16; each 32-column block's tile is scaled by the rows' d in fp32.
//
// Tiling: a block owns 128 rows (kRowTiles 16-row tiles per warp) and one split of the row length: split s
// of S = min(8, steps) takes 256-column steps s, s + S, ..., stages those columns of every token
// into shared memory once for all its warps, and the S splits of a row block form a thread-block
// cluster that adds its partial sums in split order through distributed shared memory. A token's
// result is formed by the same operations in the same order whatever the number of tokens in the
// step (tokens are independent columns of the MMAs), so batched steps are batch invariant among
// themselves; their arithmetic differs from the small-step GEMVs'.
//
// All need subnormals preserved (no -ftz / fast-math for this file).
#include <cooperative_groups.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "backend/cuda/common.cuh"
#include "backend/cuda/dequant.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/mma.cuh"

namespace ferrum::cuda {

namespace {

namespace cg = cooperative_groups;

constexpr int kBlockRows = 128;
constexpr int kRowTiles = 2;  // 16-row tiles per warp: each staged B fragment feeds two MMAs
constexpr int kWarps = kBlockRows / (16 * kRowTiles);
constexpr int kMaxSplits = 8;  // the portable cluster size
constexpr int kStepCols = 256;
// Partial sums for the cluster reduction, [token][row] with a padded row stride.
constexpr int kPartStride = kBlockRows + 4;

template <int kTiles>
constexpr size_t smem_bytes() {
  const size_t staged = sizeof(__half) * 8 * kTiles * kTokenHalves;
  const size_t partial = sizeof(float) * 8 * kTiles * kPartStride;
  return staged > partial ? staged : partial;
}

// The B fragment (hi and lo halves) of token tile tt for columns col .. col + 3 of the staged step
// (col a multiple of 4); zeros for a lane group past the last token.
struct BFrag {
  uint2 hi, lo;
};
__device__ __forceinline__ BFrag b_frag(const __half* sm, int tt, int g, int nt, int col) {
  const int t = 8 * tt + g;
  if (t >= nt) return {make_uint2(0, 0), make_uint2(0, 0)};
  const __half* p = sm + t * kTokenHalves + kGroupHalves * (col >> 6) + (col & 63);
  return {*reinterpret_cast<const uint2*>(p), *reinterpret_cast<const uint2*>(p + kPartHalves)};
}

// Each Kind decodes the weights of a warp's kRowTiles 16-row tiles (W per tile) and accumulates
// acc[token tile][row tile] for the staged step: every B fragment read from shared memory serves all of
// the warp's row tiles.
//
// ---- Q4_K ----
// Lane (g, c) owns quant bytes 32c .. 32c + 31 of rows g and g + 8: their low nibbles are sub-block
// 2c, their high nibbles sub-block 2c + 1. MMA j (0..15) takes from every lane the four columns of its
// bytes 4 (j % 8) .. + 3 (low nibbles for j < 8, high after), so the staged columns are read in the
// same permuted order.
struct Q4K {
  static constexpr bool kSums = true;
  using W = Q4KStep;
  template <int kTiles>
  __device__ __forceinline__ static void accumulate(const W (&o)[kRowTiles], const __half* sm, int nt,
                                                    int lane, float (&acc)[kTiles][kRowTiles][4]) {
    const int g = lane >> 2, c = lane & 3;
    int sc[kRowTiles][2][2], m[kRowTiles][2][2];
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt)
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const uint64_t lo = o[rt].head[i].y | (uint64_t{o[rt].head[i].z} << 32);
        scale_min_k4_words(2 * c, lo, o[rt].head[i].w, &sc[rt][i][0], &m[rt][i][0]);
        scale_min_k4_words(2 * c + 1, lo, o[rt].head[i].w, &sc[rt][i][1], &m[rt][i][1]);
      }
    float aq[kTiles][kRowTiles][4] = {};
#pragma unroll
    for (int nib = 0; nib < 2; ++nib) {  // low nibbles (sub-block 2c), then high (2c + 1)
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        uint32_t a[kRowTiles][4];
#pragma unroll
        for (int rt = 0; rt < kRowTiles; ++rt) {
          const __half2 sa = __half2half2(__int2half_rn(sc[rt][0][nib])),
                        sb = __half2half2(__int2half_rn(sc[rt][1][nib]));
          const uint32_t wa = (&o[rt].q[0][j >> 2].x)[j & 3], wb = (&o[rt].q[1][j >> 2].x)[j & 3];
          const uint32_t na = (wa >> (4 * nib)) & 0x0F0F0F0Fu, nb = (wb >> (4 * nib)) & 0x0F0F0F0Fu;
          a[rt][0] = q4_pair(na, 0x4140, sa), a[rt][2] = q4_pair(na, 0x4342, sa);
          a[rt][1] = q4_pair(nb, 0x4140, sb), a[rt][3] = q4_pair(nb, 0x4342, sb);
        }
        // Lane c's bytes 4 (j % 8) .. + 3 are columns 64c + 32 nib + 4 (j % 8) .. + 3 of the step;
        // the staged group of 64 columns is c, so the in-group column is 32 nib + 4 j.
#pragma unroll
        for (int tt = 0; tt < kTiles; ++tt) {
          const BFrag b = b_frag(sm, tt, g, nt, 64 * c + 32 * nib + 4 * j);
#pragma unroll
          for (int rt = 0; rt < kRowTiles; ++rt) {
            mma_f16(aq[tt][rt], a[rt][0], a[rt][1], a[rt][2], a[rt][3], b.hi.x, b.hi.y);
            mma_f16(aq[tt][rt], a[rt][0], a[rt][1], a[rt][2], a[rt][3], b.lo.x, b.lo.y);
          }
        }
      }
    }
    // Min term: k slots (2c, 2c + 1) and (2c + 8, 2c + 9) pair the mins of sub-blocks 2c, 2c + 1 with
    // the hi and the lo halves of their activation sums.
    uint32_t ma[kRowTiles], mb[kRowTiles];
    float d[kRowTiles][2], dmin[kRowTiles][2];
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt) {
      ma[rt] = half2_bits(__halves2half2(__int2half_rn(m[rt][0][0]), __int2half_rn(m[rt][0][1])));
      mb[rt] = half2_bits(__halves2half2(__int2half_rn(m[rt][1][0]), __int2half_rn(m[rt][1][1])));
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        d[rt][i] = __fmul_rn(half_bits_to_float(static_cast<uint16_t>(o[rt].head[i].x & 0xFFFF)), 0x1p24f);
        dmin[rt][i] = half_bits_to_float(static_cast<uint16_t>(o[rt].head[i].x >> 16));
      }
    }
#pragma unroll
    for (int tt = 0; tt < kTiles; ++tt) {
      const int t = 8 * tt + g;
      const __half* sums = sm + t * kTokenHalves + kSumsAt;
      const uint32_t s_hi = t < nt ? *reinterpret_cast<const uint32_t*>(sums + 2 * c) : 0u;
      const uint32_t s_lo = t < nt ? *reinterpret_cast<const uint32_t*>(sums + 8 + 2 * c) : 0u;
#pragma unroll
      for (int rt = 0; rt < kRowTiles; ++rt) {
        float am[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        mma_f16(am, ma[rt], mb[rt], ma[rt], mb[rt], s_hi, s_lo);
#pragma unroll
        for (int i = 0; i < 4; ++i)
          acc[tt][rt][i] =
              __fmaf_rn(-dmin[rt][i >> 1], am[i], __fmaf_rn(d[rt][i >> 1], aq[tt][rt][i], acc[tt][rt][i]));
      }
    }
  }
};

// ---- Q6_K ----
// Sub-block s (16 columns: half h = s / 8, quarter j = (s % 8) / 2, parity p = s % 2) is MMA k-step s;
// lane (g, c) owns its columns 4c .. 4c + 3, whose low 4 bits are bytes 64h + 32 (j % 2) + 16p + 4c .. + 3
// of ql (nibble j / 2) and whose high 2 bits are bits 2j of bytes 32h + 16p + 4c .. + 3 of qh. Blocks
// (210 bytes) are only 2-byte aligned, so loads are 16-bit.
struct Q6K {
  static constexpr bool kSums = false;
  struct W {
    uint32_t ql[2][8];  // [row][4h + 2 (j % 2) + p]
    uint32_t qh[2][4];  // [row][2h + p]
    uint32_t sc[2][4];  // the 16 int8 scales
    float d[2];
    __device__ __forceinline__ void load(const WMat& w, const int64_t (&rows)[2], int64_t st, int c) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const uint8_t* b = w.p + rows[i] * w.row_bytes + st * sizeof(BlockQ6_K);
        load_q6k_words(b, c, ql[i], qh[i], sc[i]);
        d[i] = half_bits_to_float(ld16(b + 208));
      }
    }
  };
  template <int kTiles>
  __device__ __forceinline__ static void accumulate(const W (&o)[kRowTiles], const __half* sm, int nt,
                                                    int lane, float (&acc)[kTiles][kRowTiles][4]) {
    const int g = lane >> 2, c = lane & 3;
    constexpr uint32_t kBias = 0x64206420u;  // 1056 = 1024 + 32 in both halves
#pragma unroll
    for (int s = 0; s < 16; ++s) {
      const int h = s >> 3, j = (s & 7) >> 1, p = s & 1;
      uint32_t a[kRowTiles][2][2];
      float ds[kRowTiles][2];
#pragma unroll
      for (int rt = 0; rt < kRowTiles; ++rt)
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const uint32_t code = ((o[rt].ql[i][4 * h + 2 * (j & 1) + p] >> (4 * (j >> 1))) & 0x0F0F0F0Fu) |
                                (((o[rt].qh[i][2 * h + p] >> (2 * j)) & 0x03030303u) << 4);
          a[rt][i][0] = biased_pair(code, 0x4140, kBias);
          a[rt][i][1] = biased_pair(code, 0x4342, kBias);
          ds[rt][i] = __fmul_rn(
              o[rt].d[i], static_cast<float>(static_cast<int8_t>(o[rt].sc[i][s >> 2] >> (8 * (s & 3)))));
        }
#pragma unroll
      for (int tt = 0; tt < kTiles; ++tt) {
        const BFrag b = b_frag(sm, tt, g, nt, 16 * s + 4 * c);
#pragma unroll
        for (int rt = 0; rt < kRowTiles; ++rt) {
          float tile[4] = {0.0f, 0.0f, 0.0f, 0.0f};
          mma_f16(tile, a[rt][0][0], a[rt][1][0], a[rt][0][1], a[rt][1][1], b.hi.x, b.hi.y);
          mma_f16(tile, a[rt][0][0], a[rt][1][0], a[rt][0][1], a[rt][1][1], b.lo.x, b.lo.y);
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[tt][rt][i] = __fmaf_rn(ds[rt][i >> 1], tile[i], acc[tt][rt][i]);
        }
      }
    }
  }
};

// ---- Q8_0 ----
// A step is 8 blocks: in block b, lane (g, c) owns quant bytes 4c .. 4c + 3 (k-step 2b) and
// 16 + 4c .. 16 + 4c + 3 (k-step 2b + 1) of rows g and g + 8; each block's two k-steps (hi and lo
// activations) accumulate into a fresh tile scaled by the rows' d.
struct Q8_0 {
  static constexpr bool kSums = false;
  using W = Q8_0Step;
  template <int kTiles>
  __device__ __forceinline__ static void accumulate(const W (&o)[kRowTiles], const __half* sm, int nt,
                                                    int lane, float (&acc)[kTiles][kRowTiles][4]) {
    const int g = lane >> 2, c = lane & 3;
#pragma unroll
    for (int b = 0; b < 8; ++b) {
      float tile[kTiles][kRowTiles][4] = {};
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        uint32_t a[kRowTiles][4];
#pragma unroll
        for (int rt = 0; rt < kRowTiles; ++rt) {
          a[rt][0] = biased_pair(o[rt].q[0][b][h], 0x4140, kQ8_0Bias);
          a[rt][2] = biased_pair(o[rt].q[0][b][h], 0x4342, kQ8_0Bias);
          a[rt][1] = biased_pair(o[rt].q[1][b][h], 0x4140, kQ8_0Bias);
          a[rt][3] = biased_pair(o[rt].q[1][b][h], 0x4342, kQ8_0Bias);
        }
#pragma unroll
        for (int tt = 0; tt < kTiles; ++tt) {
          const BFrag x = b_frag(sm, tt, g, nt, 32 * b + 16 * h + 4 * c);
#pragma unroll
          for (int rt = 0; rt < kRowTiles; ++rt) {
            mma_f16(tile[tt][rt], a[rt][0], a[rt][1], a[rt][2], a[rt][3], x.hi.x, x.hi.y);
            mma_f16(tile[tt][rt], a[rt][0], a[rt][1], a[rt][2], a[rt][3], x.lo.x, x.lo.y);
          }
        }
      }
#pragma unroll
      for (int tt = 0; tt < kTiles; ++tt)
#pragma unroll
        for (int rt = 0; rt < kRowTiles; ++rt)
#pragma unroll
          for (int i = 0; i < 4; ++i)
            acc[tt][rt][i] = __fmaf_rn(o[rt].d[i >> 1][b], tile[tt][rt][i], acc[tt][rt][i]);
    }
  }
};

// Up to kMaxGemvGroup matrices of one type and row length in one launch: matrix i's row blocks are
// blockIdx.x in [end[i - 1], end[i]).
struct Group {
  WMat w[kMaxGemvGroup];
  FMat y[kMaxGemvGroup];
  unsigned end[kMaxGemvGroup];
  int n;
};

template <class Kind, int kTiles>
__global__ void __launch_bounds__(kWarps * 32) kquant_kernel(Group group, CFMat x) {
  extern __shared__ __align__(16) unsigned char smem[];
  __half* staged = reinterpret_cast<__half*>(smem);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
  int mi = 0;
  while (mi + 1 < group.n && blockIdx.x >= group.end[mi]) ++mi;
  const WMat w = group.w[mi];
  const FMat y = group.y[mi];
  const int64_t block_row0 = int64_t(blockIdx.x - (mi > 0 ? group.end[mi - 1] : 0u)) * kBlockRows;
  int64_t rows[kRowTiles][2];
#pragma unroll
  for (int rt = 0; rt < kRowTiles; ++rt) {
    const int64_t row0 = block_row0 + 16 * (kRowTiles * warp + rt);
    rows[rt][0] = min(row0 + g, w.rows - 1);
    rows[rt][1] = min(row0 + g + 8, w.rows - 1);
  }
  const int64_t n_steps = w.cols / kStepCols;
  const int split = static_cast<int>(blockIdx.y), splits = static_cast<int>(gridDim.y);
  const int nt = static_cast<int>(x.rows);
  float acc[kTiles][kRowTiles][4] = {};
  wait_for_inputs();
  for (int64_t st = split; st < n_steps; st += splits) {
    typename Kind::W wt[kRowTiles];
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt) wt[rt].load(w, rows[rt], st, c);
    __syncthreads();  // the previous step's fragment reads are done
    for (int t = warp; t < nt; t += kWarps)
      stage_token<Kind::kSums>(x.p + t * x.ld + kStepCols * st, lane, staged + t * kTokenHalves);
    __syncthreads();
    Kind::template accumulate<kTiles>(wt, staged, nt, lane, acc);
  }
  // Cluster reduction: every split leaves its [token][row] partials in its shared memory; split r
  // adds tokens r, r + splits, ... over the splits in order and stores them.
  __syncthreads();
  float* part = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int tt = 0; tt < kTiles; ++tt)
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt)
#pragma unroll
      for (int i = 0; i < 4; ++i)
        part[(8 * tt + 2 * c + (i & 1)) * kPartStride + 16 * (kRowTiles * warp + rt) + g + 8 * (i >> 1)] =
            acc[tt][rt][i];
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();
  for (int idx = threadIdx.x;; idx += kWarps * 32) {
    const int t = split + splits * (idx / kBlockRows), r = idx % kBlockRows;
    if (t >= nt) break;
    const int at = t * kPartStride + r;
    float v = cluster.map_shared_rank(part, 0)[at];
    for (int s = 1; s < splits; ++s) v += cluster.map_shared_rank(part, s)[at];
    if (block_row0 + r < w.rows) y.p[t * y.ld + block_row0 + r] = v;
  }
  cluster.sync();  // peers' shared memory stays until every split has read it
}

template <class Kind, int kTiles>
cudaError_t launch_group(cudaStream_t s, const Group& group, unsigned row_blocks, int splits, CFMat x) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(row_blocks, static_cast<unsigned>(splits), 1);
  cfg.blockDim = dim3(kWarps * 32, 1, 1);
  cfg.dynamicSmemBytes = smem_bytes<kTiles>();
  cfg.stream = s;
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = 1;
  attr[0].val.clusterDim.y = static_cast<unsigned>(splits);
  attr[0].val.clusterDim.z = 1;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;  // see launch() in common.cuh
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 2;
  return cudaLaunchKernelEx(&cfg, kquant_kernel<Kind, kTiles>, group, x);
}

// Calls f(Kind) for the three types.
template <class F>
void dispatch_kind(DType t, F&& f) {
  if (t == DType::Q4_K)
    f(Q4K{});
  else if (t == DType::Q6_K)
    f(Q6K{});
  else
    f(Q8_0{});
}

// Calls f(std::integral_constant<int, kTiles>) with the number of 8-token tiles (2, 4 or 8) that covers
// n (9 .. 64).
template <class F>
void by_tiles(int64_t n, F&& f) {
  if (n <= 16)
    f(std::integral_constant<int, 2>{});
  else if (n <= 32)
    f(std::integral_constant<int, 4>{});
  else
    f(std::integral_constant<int, 8>{});
}

template <class Kind>
cudaError_t allow_smem() {
  cudaError_t e = cudaSuccess;
  const auto allow = [&](auto kernel, size_t bytes) {
    if (e == cudaSuccess)
      e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  };
  allow(kquant_kernel<Kind, 2>, smem_bytes<2>());
  allow(kquant_kernel<Kind, 4>, smem_bytes<4>());
  allow(kquant_kernel<Kind, 8>, smem_bytes<8>());
  return e;
}

}  // namespace

bool kquant_batch_applies(const WMat& w, CFMat x) {
  // All read 256-column steps and 16-byte activation runs; Q4_K and Q8_0 also 16-byte weight rows.
  if (w.cols % kStepCols != 0 || x.ld % 4 != 0 || !aligned16(x.p) || x.rows <= kGemvMaxTokens ||
      x.rows > kKquantMaxTokens)
    return false;
  if (w.type == DType::Q4_K || w.type == DType::Q8_0) return aligned16(w.p) && w.row_bytes % 16 == 0;
  return w.type == DType::Q6_K;
}

// One launch per weight type present in the group.
cudaError_t kquant_batch_group(cudaStream_t s, CFMat x, const WMat* w, const FMat* y, int n) {
  if (x.rows == 0) return cudaSuccess;
  for (DType type : {DType::Q4_K, DType::Q6_K, DType::Q8_0}) {
    Group group{};
    unsigned blocks = 0;
    for (int i = 0; i < n; ++i) {
      if (w[i].type != type || w[i].rows == 0) continue;
      blocks += static_cast<unsigned>((w[i].rows + kBlockRows - 1) / kBlockRows);
      group.w[group.n] = w[i];
      group.y[group.n] = y[i];
      group.end[group.n++] = blocks;
    }
    if (group.n == 0) continue;
    const int splits = static_cast<int>(std::min<int64_t>(kMaxSplits, group.w[0].cols / kStepCols));
    cudaError_t e = cudaSuccess;
    dispatch_kind(type, [&](auto kind) {
      by_tiles(x.rows, [&](auto tiles) {
        e = launch_group<decltype(kind), decltype(tiles)::value>(s, group, blocks, splits, x);
      });
    });
    if (e != cudaSuccess) return e;
  }
  return cudaGetLastError();
}

cudaError_t init_kquant_batch() {
  for (cudaError_t e : {allow_smem<Q4K>(), allow_smem<Q6K>(), allow_smem<Q8_0>()})
    if (e != cudaSuccess) return e;
  return cudaSuccess;
}

}  // namespace ferrum::cuda
