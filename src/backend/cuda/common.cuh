// Warp and block reductions and launch helpers shared by the kernels. The butterfly order is fixed, so a
// reduction gives the same bits every time for the same inputs.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace ferrum::cuda {

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `red` is 32 floats of shared memory; the function may be called repeatedly with the same buffer.
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // the previous call's readers are done with `red`
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < n_warps ? red[lane] : 0.0f;
  return warp_sum(v);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

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

}  // namespace ferrum::cuda
