// Pieces shared by the weight-streaming GEMVs of small steps (gemv_kquant.cu: float32-accurate
// activations; gemv_int8.cu: activations rounded to 8 bits): a block of kGemvWarps warps computes 16
// rows as m16n8 tensor-core tiles, one launch covers a group of matrices of one type, and Q8_0, F16 and
// BF16 weights stream through shared memory.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.h"
#include "quant/blocks.h"

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

// Row block `block`'s matrix, and the first of the n_rows rows it computes.
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

// ---- Weights streamed through shared memory ----
//
// A block of 8 warps computes 16 rows. Iteration i covers the steps 8i .. 8i + 7 (each a fixed number of
// columns: 256 for Q8_0, 64 for F16/BF16): warp w takes step 8i + w of all 16 rows, and the warps'
// partial sums are added in a fixed order at the end. The weight bytes of an iteration (a "stage": 16 rows
// x 8 steps) are copied into shared memory with cp.async, some iterations ahead, the first ones before the
// kernel waits for its predecessor (weights are never written by kernels). Loading the weights into
// registers (a step per warp in flight) reached 32 % of HBM bandwidth for Q8_0, whose 2-byte-aligned
// blocks also took a load per 16-bit half; staged, 50 % (8B-shape decode step, H200).

// Shared-memory layout of a stage for steps of kStepCols columns, kStepBytes per row: rows kRowStride
// apart, padded so that the lanes of a fragment load (4-byte words or 16-byte runs, per type) hit
// different banks.
template <int kStepCols, int kStepBytes, int kPad, int kStageCount>
struct StageLayout {
  static constexpr int kStages = kStageCount;
  static constexpr int kCols = kStepCols;
  static constexpr int kBytes = kStepBytes;
  static constexpr int kRowStride = kGemvWarps * kStepBytes + kPad;
  static constexpr int kStageBytes = 16 * kRowStride;
  static constexpr int kChunks = kGemvWarps * kStepBytes / 16;  // 16-byte copies per row
  static constexpr size_t kRedBytes = sizeof(float) * kGemvWarps * 32 * 4;
  // The stages, each warp's x_bytes of staged activations, then the warps' final tiles.
  __host__ __device__ static constexpr size_t smem_bytes(size_t x_bytes) {
    return size_t{kStageCount} * kStageBytes + kGemvWarps * x_bytes + kRedBytes;
  }
};

__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  const auto s = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most kPending of this thread's copy groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
}

// The copies of the calling thread: of row threadIdx.x / 16 of every stage, the 16-byte chunks
// threadIdx.x % 16 + 16 k (a row's chunks at consecutive threads, so each copy is one address offset from
// the last). When a thread's chunks were consecutive indices over the whole stage, each copy's row and
// chunk took a division, a clamp and 64-bit arithmetic, a fifth of a Q8_0 GEMV's instructions: Q8_0
// gate/up of the 8B shape 41.6 -> 38.5 us, tg128 +7 % (8 layers, H200).
struct StageCopier {
  const unsigned char* src;  // the row's first byte
  int dst;                   // the row's offset in a stage
  int ch0;                   // the first chunk
};
template <class L>
__device__ __forceinline__ StageCopier stage_copier(const WMat& w, int64_t row0) {
  static_assert(kGemvWarps * 32 == 16 * 16, "16 threads a row");
  const int r = static_cast<int>(threadIdx.x) / 16;
  return {w.p + min(row0 + r, w.rows - 1) * w.row_bytes, r * L::kRowStride,
          static_cast<int>(threadIdx.x) % 16};
}

// Starts copying steps step0 .. step0 + 7 (those that exist) of the block's 16 rows into `stage`, as one
// copy group (empty past the last step, so every thread commits the same number of groups).
template <class L>
__device__ __forceinline__ void issue_stage(unsigned char* stage, const StageCopier& cp, int64_t step0,
                                            int64_t n_steps) {
  const int64_t steps = min(int64_t{kGemvWarps}, n_steps - step0);
  if (steps > 0) {
    const int chunks = static_cast<int>(steps) * L::kBytes / 16;
    const unsigned char* src = cp.src + step0 * L::kBytes + 16 * cp.ch0;
    unsigned char* dst = stage + cp.dst + 16 * cp.ch0;
#pragma unroll
    for (int k = 0; k < (L::kChunks + 15) / 16; ++k)
      if (cp.ch0 + 16 * k < chunks) cp_async16(dst + 256 * k, src + 256 * k);
  }
  cp_async_commit();
}

// Activations a step does not load into registers ahead (Step::XRegs).
struct NoX {};

// The loop shared by the staged GEMVs, for row block `block` of the group and the tokens x (rows y_row0 ..
// of the block's matrix's y), as kTiles tiles of 8 (the last partial; one tile of x.rows for kTiles = 1),
// each with its own accumulator tile. A Step holds what else it needs and provides:
//   kTiles             tiles a block computes (their weights are read from shared memory once for all);
//   kXBytes            shared memory for each warp's staged activations of one step (0: none);
//   XRegs, load_x(xt, st, live)
//                      the lane's activations of step st held in registers (NoX: none), loaded an
//                      iteration ahead of their use (xt: the lane's token g, see below);
//   stage(st, xs, xr)  the calling warp stages step st's activations at xs (called only for st < n_steps,
//                      before the barrier that precedes the products);
//   (acc, a, b, xt, live, st, xs, xr)
//                      adds step st of rows g (bytes at a) and g + 8 (at b) to the lane's tiles; xt: the
//                      step's first column of the lane's token g (live: g < x.rows; else token 0).
// Loading the activations an iteration ahead takes their latency (an L2 read, as every warp of the block
// waits for it at the next barrier) off each iteration: Llama-3.1-8B shape with 8 layers, H200, tg128
// BF16 +7 %, Q8_0 (with the deeper stages below) +3 %.
template <class L, class Step>
__device__ __forceinline__ void staged_gemv(const Group& group, unsigned block, CFMat x, int64_t y_row0,
                                            const Step& step) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int kStages = L::kStages, kTiles = Step::kTiles;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2;
  unsigned char* xs = smem + kStages * L::kStageBytes + warp * Step::kXBytes;
  int64_t row0;
  const int mi = block_rows(group, 16, block, &row0);
  const WMat w = group.w[mi];
  const int64_t n_steps = w.cols / L::kCols;
  const StageCopier copier = stage_copier<L>(w, row0);
#pragma unroll
  for (int s = 0; s < kStages; ++s)
    issue_stage<L>(smem + s * L::kStageBytes, copier, kGemvWarps * s, n_steps);
  // The next kernel (a short one, which triggers at its start) may then launch once this GEMV's last
  // blocks have started, so the GEMV after it prefetches its weights during this one's tail. Against
  // the trigger at exit: Llama-3.1-8B shape with 8 layers, tg128 +2 % for Q8_0 and +4.5 % for BF16
  // (H200). The register-loading GEMVs (Q4_K, Q6_K) keep it at exit: an early one measured no faster.
  allow_dependents();
  wait_for_inputs();
  const int nt = static_cast<int>(x.rows);
  const bool live = g < nt;  // lane group g carries token g
  const float* xt = x.p + (live ? g : 0) * x.ld;
  float acc[kTiles][4] = {};
  const int64_t n_iter = (n_steps + kGemvWarps - 1) / kGemvWarps;
  typename Step::XRegs next{};
  if (warp < n_steps) next = step.load_x(xt, warp, live);
  for (int64_t it = 0; it < n_iter; ++it) {
    unsigned char* stage = smem + (it % kStages) * L::kStageBytes;
    const int64_t st = kGemvWarps * it + warp;
    const typename Step::XRegs xr = next;
    if (st + kGemvWarps < n_steps) next = step.load_x(xt, st + kGemvWarps, live);
    if constexpr (Step::kXBytes > 0) {
      if (st < n_steps) step.stage(st, xs, xr);
    }
    cp_async_wait<kStages - 1>();
    __syncthreads();  // every thread's copies of this stage have landed (and the warps' staged activations)
    if (st < n_steps) {
      const unsigned char* a = stage + g * L::kRowStride + warp * L::kBytes;
      step(acc, a, a + 8 * L::kRowStride, xt + L::kCols * st, live, st, xs, xr);
    }
    __syncthreads();  // every warp is done with the stage (and its activations) before they are refilled
    issue_stage<L>(stage, copier, kGemvWarps * (it + kStages), n_steps);
  }
  float* red = reinterpret_cast<float*>(smem + kStages * L::kStageBytes + kGemvWarps * Step::kXBytes);
  FMat y = group.y[mi];
  y.p += y_row0 * y.ld;
#pragma unroll
  for (int j = 0; j < kTiles; ++j) {
    if (kTiles > 1 && 8 * j >= nt) break;
    if (j > 0) __syncthreads();  // warp 0 has read the previous tile's sums
    reduce_store(red, acc[j], row0, w, kTiles > 1 ? min(8, nt - 8 * j) : nt, y);
    y.p += 8 * y.ld;
  }
}

// Dynamic shared memory of a staged GEMV kernel, and the attribute that allows it.
template <class L, class Step>
constexpr size_t staged_smem() {
  return L::smem_bytes(Step::kXBytes);
}
template <class L, class Step, class... Params>
cudaError_t allow_staged_smem(void (*kernel)(Params...)) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(staged_smem<L, Step>()));
}

// Stage layouts. Q8_0's 16-byte pad puts the rows of a fragment 4 banks apart (its lanes read 4-byte
// words); F16 lanes read 16-byte runs 16 bytes apart, so their rows are 64 bytes apart. Stage counts as
// measured best: a third Q8_0 stage costs a resident block per SM (3 stages for F16/BF16: 18 % faster
// than 2; 4: slower), so only launches of at most two blocks per SM take Q8_0DeepLayout (8-bit
// activations, one token: the o and down projections of the 8B shape, 256 blocks on 132 SMs).
using Q8_0Layout = StageLayout<256, 8 * sizeof(BlockQ8_0), 16, 2>;
using Q8_0DeepLayout = StageLayout<256, 8 * sizeof(BlockQ8_0), 16, 3>;
using Float16Layout = StageLayout<64, 128, 64, 3>;

// A Q8_0 block's 32 codes start 2 bytes in: in a stage (rows and steps 16-byte aligned, blocks 34 bytes)
// those of odd blocks are 4-byte aligned, those of even blocks are read as two 16-bit halves.
__device__ __forceinline__ uint32_t q8_0_word(const unsigned char* p, bool aligned4) {
  if (aligned4) return *reinterpret_cast<const uint32_t*>(p);
  const auto* h = reinterpret_cast<const uint16_t*>(p);
  return uint32_t{h[0]} | (uint32_t{h[1]} << 16);
}

// gemv_int8.cu: the launch of the GEMV against 8-bit activations for a group of matrices of type t
// (int8_gemv_applies; `blocks` blocks of 16 rows) and x.rows tokens, up to kKquantMaxTokens in tiles of 8.
// With more than one token it reads x as rounded into `scratch` (int8_gemv_scratch_bytes(x) of device
// memory) by int8_gemv_quantize, once for all types.
cudaError_t init_int8_gemv();  // kernel attributes, once per device
cudaError_t int8_gemv_quantize(cudaStream_t s, CFMat x, void* scratch);
// sm_count: the device's SMs (the single-token Q8_0 launch's stage count depends on it, not its bits).
cudaError_t int8_gemv(cudaStream_t s, DType t, unsigned blocks, const Group& group, CFMat x, void* scratch,
                      int sm_count);

}  // namespace ferrum::cuda
