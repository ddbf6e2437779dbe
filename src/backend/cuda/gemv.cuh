// Pieces shared by the weight-streaming GEMVs of small steps (gemv_kquant.cu: float32-accurate
// activations; gemv_int8.cu: activations rounded to 8 bits): a block of kGemvWarps warps computes 16
// rows as m16n8 tensor-core tiles, one launch covers a group of matrices of one type.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/kernels.h"

namespace ferrum::cuda {

constexpr int kGemvWarps = 8;

// Up to kMaxGemvGroup matrices of one type in one launch: matrix i's row blocks are blocks end[i - 1] ..
// end[i] - 1.
struct Group {
  WMat w[kMaxGemvGroup];
  FMat y[kMaxGemvGroup];
  unsigned end[kMaxGemvGroup];
  int n;
};

// Row block `block`'s matrix, and the first of the n_rows rows it computes. The GEMVs leave the trigger of
// the next kernel to their exit (common.cuh): an explicit one after the main loop measured slightly slower.
__device__ __forceinline__ int block_rows(const Group& group, int64_t n_rows, unsigned block, int64_t* row0) {
  int mi = 0;
  while (mi + 1 < group.n && block >= group.end[mi]) ++mi;
  *row0 = int64_t(block - (mi > 0 ? group.end[mi - 1] : 0u)) * n_rows;
  return mi;
}

// Each warp's accumulator tile into `red` (kGemvWarps * 128 floats of shared memory), then a barrier.
__device__ __forceinline__ void store_tiles(float* red, const float (&acc)[4]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int i = 0; i < 4; ++i) red[(warp * 32 + lane) * 4 + i] = acc[i];
  __syncthreads();
}
// Element i of the calling lane's tile summed over warps kFrom .. kTo - 1, in that order.
template <int kFrom, int kTo>
__device__ __forceinline__ float sum_tiles(const float* red, int i) {
  const int lane = threadIdx.x & 31;
  float v = red[(kFrom * 32 + lane) * 4 + i];
#pragma unroll
  for (int k = kFrom + 1; k < kTo; ++k) v += red[(k * 32 + lane) * 4 + i];
  return v;
}

// The end of every tensor-core GEMV: adds the 8 warps' tiles in a fixed order and stores rows
// row0 + g and row0 + g + 8 for tokens 2c and 2c + 1. `red`: kGemvWarps * 128 floats of shared memory.
__device__ __forceinline__ void reduce_store(float* red, const float (&acc)[4], int64_t row0, const WMat& w,
                                             int nt, FMat y) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
  store_tiles(red, acc);
  if (warp != 0) return;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float v = sum_tiles<0, kGemvWarps>(red, i);
    const int t = 2 * c + (i & 1);
    const int64_t r = row0 + g + 8 * (i >> 1);
    if (t < nt && r < w.rows) y.p[t * y.ld + r] = v;
  }
}

// gemv_int8.cu: the launch of the GEMV against 8-bit activations for a group of matrices of type t
// (int8_gemv_applies; `blocks` blocks of 16 rows) and x.rows tokens, at most nt (1, 2, 4 or 8) or, with
// nt = 8, up to kKquantMaxTokens in tiles of 8. With more than 4 tokens it reads x as rounded into
// `scratch` (int8_gemv_scratch_bytes(x) of device memory) by int8_gemv_quantize, once for all types.
cudaError_t int8_gemv_quantize(cudaStream_t s, CFMat x, void* scratch);
cudaError_t int8_gemv(cudaStream_t s, DType t, int nt, unsigned blocks, const Group& group, CFMat x,
                      void* scratch);

}  // namespace ferrum::cuda
