// GEMVs of small steps against activations rounded to 8 bits: the default for decode (BackendOptions::
// exact_gemm keeps gemv_kquant.cu's float32-accurate kernels). As llama.cpp's CPU path rounds
// activations to Q8_K blocks before its integer dot products, each token's activations are rounded per
// 256 columns to int8 codes with one scale (d = max |x| / 127), and the weights' integer codes multiply
// them on tensor cores (mma.sync m16n8k32, s8 x s8 -> s32: exact). A Q4_K code is then one AND (and a
// shift) per four codes, where the exact kernel spends a byte permute and a half multiply per two codes
// and two MMAs (hi + lo activation halves) per k step: ~0.2 instructions a weight byte, which made it
// instruction-bound at ~40 % of HBM bandwidth (Nsight Compute, H200).
//
// Each token's result is formed by the same operations in the same order whatever the number of
// tokens (steps of more than 8 run as tiles of 8), so these GEMVs are batch invariant among steps of up
// to kKquantMaxTokens tokens.
#include <cuda_fp16.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/dequant.cuh"
#include "backend/cuda/gemv.cuh"
#include "backend/cuda/mma.cuh"

namespace ferrum::cuda {

namespace {

// A staged token (256 columns): the int8 codes, then the 16 sums of 16 codes as f16 (exact: |sum| <=
// 2032). In shared memory tokens are 288 bytes (72 banks) apart, so the four tokens read by a half warp
// start 8 banks apart; the quantize pass writes records of kRecBytes with the scale d at kDAt.
constexpr int kTokBytes = 288;
constexpr int kBsumAt = 256;
constexpr int kDAt = 288;
constexpr int kRecBytes = 304;

// Rounds columns [0, 256) of one token (xr) to int8 codes q = round(x / d), d = max |x| / 127 (lane L takes
// columns 8L .. 8L + 7), stores them with their 16-column sums at tok and returns d.
__device__ __forceinline__ float stage_q8(const float* xr, int lane, unsigned char* tok) {
  const float4 u = __ldg(reinterpret_cast<const float4*>(xr + 8 * lane));
  const float4 v = __ldg(reinterpret_cast<const float4*>(xr + 8 * lane + 4));
  const float amax = warp_max(fmaxf(fmaxf(fmaxf(fabsf(u.x), fabsf(u.y)), fmaxf(fabsf(u.z), fabsf(u.w))),
                                    fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)))));
  const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
  // x * id + 1.5 * 2^23 is rounded (to nearest even) to an integer held in the low mantissa bits; its
  // low byte is the two's-complement code.
  const auto code = [id](float a) { return __float_as_uint(__fmaf_rn(a, id, 12582912.0f)); };
  const auto pack = [](uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    return __byte_perm(__byte_perm(a, b, 0x0040), __byte_perm(c, d, 0x0040), 0x5410);
  };
  const uint32_t w0 = pack(code(u.x), code(u.y), code(u.z), code(u.w));
  const uint32_t w1 = pack(code(v.x), code(v.y), code(v.z), code(v.w));
  *reinterpret_cast<uint2*>(tok + 8 * lane) = make_uint2(w0, w1);
  int s = __dp4a(static_cast<int>(w0), 0x01010101, __dp4a(static_cast<int>(w1), 0x01010101, 0));
  s += __shfl_xor_sync(0xffffffffu, s, 1);
  if ((lane & 1) == 0) reinterpret_cast<__half*>(tok + kBsumAt)[lane >> 1] = __int2half_rn(s);
  return amax / 127.0f;
}

__device__ __forceinline__ uint32_t half2_of(int v) {
  const __half h = __int2half_rn(v);
  return half2_bits(__halves2half2(h, h));
}

// Q4_K: lane (g, c) reads of rows g and g + 8 the 16-byte head (d, dmin, 12 scale bytes) and bytes 8c ..
// 8c + 7 of each 32-byte quant chunk j (low nibbles: columns 8c .. 8c + 7 of sub-block 2j, high
// nibbles: of sub-block 2j + 1). Sub-block s is one m16n8k32 MMA (the lane's codes at k slots 4c .. 4c + 3
// and 16 + 4c .. + 3, the same columns of token g), its integer result scaled by the rows' 6-bit
// sub-block scales in integers (|sum| < 2^25). The min term sum_s m_s sum_{k in s} x_k is one f16 MMA
// (exact integers): k slots 2c, 2c + 1 and 2c + 8, 2c + 9 pair the mins of sub-blocks c and c + 4 with the
// sums of their two 16-column halves.
struct Q4KInt8 {
  uint4 head[2];
  uint2 q[2][4];
  __device__ __forceinline__ void load(const uint8_t* const (&rows)[2], int64_t sb, int c) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint8_t* b = rows[i] + sb * sizeof(BlockQ4_K);
      head[i] = __ldg(reinterpret_cast<const uint4*>(b));
#pragma unroll
      for (int j = 0; j < 4; ++j) q[i][j] = __ldg(reinterpret_cast<const uint2*>(b + 16 + 32 * j + 8 * c));
    }
  }
  // v[i]: the super-block's sum for row g + 8 (i >> 1), token 2c + (i & 1), in units of the token's d.
  __device__ __forceinline__ void dot(const unsigned char* tok, int c, float (&v)[4]) const {
    // Scales and mins of sub-blocks 0-3 and 4-7 as bytes (get_scale_min_k4's packing).
    uint32_t sc[2][2], mn[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint32_t s0 = head[i].y, s1 = head[i].z, s2 = head[i].w;
      sc[i][0] = s0 & 0x3F3F3F3Fu;
      sc[i][1] = (s2 & 0x0F0F0F0Fu) | ((s0 >> 2) & 0x30303030u);
      mn[i][0] = s1 & 0x3F3F3F3Fu;
      mn[i][1] = ((s2 >> 4) & 0x0F0F0F0Fu) | ((s1 >> 2) & 0x30303030u);
    }
    int isum[4] = {0, 0, 0, 0};
#pragma unroll
    for (int s = 0; s < 8; ++s) {
      const int j = s >> 1, sh = 4 * (s & 1);
      const uint32_t a0 = (q[0][j].x >> sh) & 0x0F0F0F0Fu, a2 = (q[0][j].y >> sh) & 0x0F0F0F0Fu;
      const uint32_t a1 = (q[1][j].x >> sh) & 0x0F0F0F0Fu, a3 = (q[1][j].y >> sh) & 0x0F0F0F0Fu;
      const uint2 b = *reinterpret_cast<const uint2*>(tok + 32 * s + 8 * c);
      int d[4] = {0, 0, 0, 0};
      mma_s8(d, a0, a1, a2, a3, b.x, b.y);
      const int sa = byte_of(sc[0][s >> 2], s & 3), sb = byte_of(sc[1][s >> 2], s & 3);
      isum[0] += sa * d[0];
      isum[1] += sa * d[1];
      isum[2] += sb * d[2];
      isum[3] += sb * d[3];
    }
    float fm[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const uint32_t* bs = reinterpret_cast<const uint32_t*>(tok + kBsumAt);
    mma_f16(fm, half2_of(byte_of(mn[0][0], c)), half2_of(byte_of(mn[1][0], c)),
            half2_of(byte_of(mn[0][1], c)), half2_of(byte_of(mn[1][1], c)), bs[c], bs[4 + c]);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t h = head[i >> 1].x;
      const float d = half_bits_to_float(static_cast<uint16_t>(h & 0xFFFF));
      const float dmin = half_bits_to_float(static_cast<uint16_t>(h >> 16));
      v[i] = __fmaf_rn(d, __int2float_rn(isum[i]), __fmul_rn(-dmin, fm[i]));
    }
  }
};

// x rounded as stage_q8 rounds it, for the NT = 8 GEMVs: record (t, sb) (token t, columns 256 sb ..
// 256 sb + 255) at out + (t * n_sb + sb) * kRecBytes. A warp per record.
__global__ void __launch_bounds__(kGemvWarps * 32) quantize_q8_kernel(CFMat x, unsigned char* out) {
  const int lane = threadIdx.x & 31;
  const int64_t n_sb = x.cols / 256, rec = int64_t{blockIdx.x} * kGemvWarps + (threadIdx.x >> 5);
  allow_dependents();
  wait_for_inputs();
  if (rec >= x.rows * n_sb) return;
  const int64_t t = rec / n_sb, sb = rec - t * n_sb;
  unsigned char* r = out + rec * kRecBytes;
  const float d = stage_q8(x.p + t * x.ld + 256 * sb, lane, r);
  if (lane == 0) *reinterpret_cast<float*>(r + kDAt) = d;
}

// Rows of K's type (Q4KInt8: K loads a super-block's weights and forms its sums). A block of 8 warps
// computes 16 rows; warp w takes super-blocks w, w + 8, ..., and the warps' partial sums are added in a
// fixed order at the end. (A Q6_K kind, codes 0..63 on m16n8k16 MMAs, measured slower than the Q6_K
// CUDA-core GEMV: Llama-3.1-8B Q4_K_M decode 326 against 345 tok/s, H200.)
//
// Up to 4 tokens, each warp rounds its super-block's activations into its shared memory. NT = 8 reads
// them from the quantize pass (`pre`; rounding 8 tokens in every block would cost several times the
// MMAs), and steps of more than 8 tokens run as `tiles` tiles of 8 tokens, the tiles of a row block in
// neighbouring blocks (so its weights come from L2 after the first). Loading the next super-block's
// weights ahead (double buffering in registers) measured slower for Q4_K: 113 registers, half the
// resident warps.
template <class K, int NT>
__global__ void __launch_bounds__(kGemvWarps * 32)
    int8_gemv_kernel(Group group, CFMat x_all, unsigned tiles, const unsigned char* pre) {
  constexpr bool kPre = NT == 8;
  constexpr int kStaged = kPre ? 1 : NT;
  __shared__ __align__(16) unsigned char toks[kGemvWarps][kStaged][kTokBytes];
  __shared__ float dx[kGemvWarps][kStaged];
  __shared__ float red[kGemvWarps * 32 * 4];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
  const unsigned tile = blockIdx.x % tiles;
  int64_t row0;
  const int mi = block_rows(group, 16, blockIdx.x / tiles, &row0);
  const WMat w = group.w[mi];
  const CFMat x{x_all.p + 8 * tile * x_all.ld, min(int64_t{8}, x_all.rows - 8 * tile), x_all.cols, x_all.ld};
  FMat y = group.y[mi];
  y.p += 8 * tile * y.ld;
  const uint8_t* const rows[2] = {w.p + min(row0 + g, w.rows - 1) * w.row_bytes,
                                  w.p + min(row0 + g + 8, w.rows - 1) * w.row_bytes};
  const int64_t n_blocks = w.cols / 256;
  wait_for_inputs();
  const int nt = static_cast<int>(x.rows);
  // Lane groups past the last token read the last token (their results are never stored).
  const int tg = min(g, nt - 1), t0 = min(2 * c, nt - 1), t1 = min(2 * c + 1, nt - 1);
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t sb = warp; sb < n_blocks; sb += kGemvWarps) {
    K wt;
    wt.load(rows, sb, c);
    const unsigned char* tok;
    float xd[2];
    if constexpr (kPre) {
      const int64_t stride = n_blocks * kRecBytes;
      const unsigned char* r = pre + 8 * tile * stride + sb * kRecBytes;
      tok = r + tg * stride;
      xd[0] = __ldg(reinterpret_cast<const float*>(r + t0 * stride + kDAt));
      xd[1] = __ldg(reinterpret_cast<const float*>(r + t1 * stride + kDAt));
    } else {
      __syncwarp();  // the previous super-block's reads of the staged tokens are done
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        if (t >= nt) break;
        const float d = stage_q8(x.p + t * x.ld + 256 * sb, lane, toks[warp][t]);
        if (lane == 0) dx[warp][t] = d;
      }
      __syncwarp();
      tok = toks[warp][tg];
      xd[0] = dx[warp][t0];
      xd[1] = dx[warp][t1];
    }
    float v[4];
    wt.dot(tok, c, v);
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[i] = __fmaf_rn(xd[i & 1], v[i], acc[i]);
  }
  reduce_store(red, acc, row0, w, nt, y);
}

}  // namespace

bool int8_gemv_applies(const WMat& w, CFMat x) {
  // 16-byte activation runs and weight-row heads, 256-column super-blocks.
  return w.type == DType::Q4_K && x.rows <= kKquantMaxTokens && x.ld % 4 == 0 && aligned16(x.p) &&
         aligned16(w.p) && w.row_bytes % 16 == 0 && w.cols % 256 == 0;
}

size_t int8_gemv_scratch_bytes(CFMat x) {
  return x.rows > 4 ? static_cast<size_t>(x.rows * (x.cols / 256)) * kRecBytes : 0;
}

cudaError_t int8_gemv_quantize(cudaStream_t s, CFMat x, void* scratch) {
  if (x.rows <= 4) return cudaSuccess;
  const int64_t records = x.rows * (x.cols / 256);
  return launch(quantize_q8_kernel, static_cast<unsigned>((records + kGemvWarps - 1) / kGemvWarps),
                kGemvWarps * 32, 0, s, x, static_cast<unsigned char*>(scratch));
}

cudaError_t int8_gemv(cudaStream_t s, DType t, int nt, unsigned blocks, const Group& group, CFMat x,
                      void* scratch) {
  const unsigned threads = kGemvWarps * 32;
  const auto run = [&](auto kind) -> cudaError_t {
    using K = decltype(kind);
    switch (nt) {
      case 1:
        return launch(int8_gemv_kernel<K, 1>, blocks, threads, 0, s, group, x, 1u, nullptr);
      case 2:
        return launch(int8_gemv_kernel<K, 2>, blocks, threads, 0, s, group, x, 1u, nullptr);
      case 4:
        return launch(int8_gemv_kernel<K, 4>, blocks, threads, 0, s, group, x, 1u, nullptr);
      default: {
        const auto tiles = static_cast<unsigned>((x.rows + 7) / 8);
        return launch(int8_gemv_kernel<K, 8>, blocks * tiles, threads, 0, s, group, x, tiles,
                      static_cast<const unsigned char*>(scratch));
      }
    }
  };
  return t == DType::Q4_K ? run(Q4KInt8{}) : cudaErrorInvalidValue;
}

}  // namespace ferrum::cuda
