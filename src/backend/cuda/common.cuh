// Warp and block reductions and launch helpers shared by the kernels. The butterfly order is fixed, so a
// reduction gives the same bits every time for the same inputs.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>
#include <utility>

namespace ferrum::cuda {

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// silu(g) * u, the gated activation of the expert gate/up kernels.
__device__ __forceinline__ float silu_times(float g, float u) { return g / (1.0f + expf(-g)) * u; }

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

// Programmatic dependent launch (Hopper). Every kernel is launched with `launch`, which lets it start
// while the kernel before it in the stream is still running; a decode step is hundreds of short kernels,
// and without this each one pays a launch gap and a cold start. The contract every kernel keeps: it may
// read weights (never written by kernels) and a step's index arrays (positions, sequence lengths, block
// tables: copied in by the host before the step's first kernel, never written by kernels) before
// `wait_for_inputs`, and touches nothing else (reads of activations, ids, caches; any write) until after
// it. `wait_for_inputs` returns once the previous kernel has finished and its writes are visible, so the
// order of the stream is kept transitively.
// `allow_dependents` lets the next kernel be scheduled once every block of this one has called it (or
// exited): the short kernels and the staged GEMVs (gemv.cuh) call it at their start, the other GEMVs
// leave it to their exit.
__device__ __forceinline__ void wait_for_inputs() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void allow_dependents() { asm volatile("griddepcontrol.launch_dependents;"); }

// kernel<<<grid, block, smem, s>>>(args...) as a programmatic dependent launch; returns the launch error.
template <class... Params, class... Args>
cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                   Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// Fetches the 128-byte line holding p into L1 (a hint: no register, no wait).
__device__ __forceinline__ void prefetch_l1(const void* p) {
  asm volatile("prefetch.global.L1 [%0];" ::"l"(p));
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
