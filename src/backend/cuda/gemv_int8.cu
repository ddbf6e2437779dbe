// GEMVs of small steps against activations rounded to 8 bits: the default for decode (BackendOptions::
// exact_gemm keeps gemv_kquant.cu's float32-accurate kernels). As llama.cpp's CPU path rounds
// activations to Q8_K blocks before its integer dot products, each token's activations are rounded per
// 256 columns to int8 codes with one scale (d = max |x| / 127), and the weights' integer codes multiply
// them on tensor cores (mma.sync m16n8k32, s8 x s8 -> s32: exact). A Q4_K code is then one AND (and a
// shift) per four codes, where the exact kernel spends a byte permute and a half multiply per two codes
// and two MMAs (hi + lo activation halves) per k step: ~0.2 instructions a weight byte, which made it
// instruction-bound at ~40 % of HBM bandwidth (Nsight Compute, H200). A Q8_0 block is one integer MMA
// where the exact kernel spends four f16 MMAs and the code conversions: its decode step's weight products
// went from 49 to 59 % of HBM bandwidth (8B shape, H200).
//
// Each token's result is formed by the same operations in the same order whatever the number of
// tokens (steps of more than 8 run as tiles of 8), so these GEMVs are batch invariant among steps of up
// to kKquantMaxTokens tokens. The MoE expert products (any step size) use the same rounding and
// arithmetic, a tile of up to 8 (token, expert) pairs a block (the end of this file).
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>

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

// The lane's columns 8 lane .. 8 lane + 7 of 256 columns of a token (xr: the first).
struct Q8Cols {
  float4 u, v;
};
__device__ __forceinline__ Q8Cols q8_cols(const float* xr, int lane) {
  return {__ldg(reinterpret_cast<const float4*>(xr + 8 * lane)),
          __ldg(reinterpret_cast<const float4*>(xr + 8 * lane + 4))};
}

// Rounds 256 columns of one token (each lane's 8 in x) to int8 codes q = round(x / d), d = max |x| / 127,
// stores them with their 16-column sums at tok and returns d.
__device__ __forceinline__ float stage_q8(Q8Cols x, int lane, unsigned char* tok) {
  const float4 u = x.u, v = x.v;
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

// Q6_K (the expert GEMVs): sub-block s (16 columns) is one m16n8k16 MMA; lane (g, c) holds of rows g and
// g + 8 the codes of columns 16s + 4c .. + 3 (load_q6k_words' layout: low 4 bits from ql, nibble j / 2; high
// 2 bits from qh, bits 2j). The codes enter the MMA unsigned (0..63), and
// sum_s sc_s sum_k (q - 32) x_k = sum_s sc_s sum_k q x_k - 32 sum_s sc_s S_s with S_s the 16-column sums
// of the staged token: that last sum is one f16 MMA over the 16 sub-blocks (exact integers, < 2^23).
struct Q6KInt8 {
  uint32_t ql[2][8];  // [row][4h + 2 (j % 2) + p]
  uint32_t qh[2][4];  // [row][2h + p]
  uint32_t sc[2][4];  // the 16 int8 scales
  uint16_t d[2];
  __device__ __forceinline__ void load(const uint8_t* const (&rows)[2], int64_t sb, int c) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint8_t* b = rows[i] + sb * sizeof(BlockQ6_K);
      load_q6k_words(b, c, ql[i], qh[i], sc[i]);
      d[i] = ld16(b + 208);
    }
  }
  // As Q4KInt8::dot.
  __device__ __forceinline__ void dot(const unsigned char* tok, int c, float (&v)[4]) const {
    int isum[4] = {0, 0, 0, 0};
#pragma unroll
    for (int s = 0; s < 16; ++s) {
      const int h = s >> 3, j = (s & 7) >> 1, p = s & 1;
      uint32_t a[2];
#pragma unroll
      for (int i = 0; i < 2; ++i)
        a[i] = ((ql[i][4 * h + 2 * (j & 1) + p] >> (4 * (j >> 1))) & 0x0F0F0F0Fu) |
               (((qh[i][2 * h + p] >> (2 * j)) & 0x03030303u) << 4);
      int dd[4] = {0, 0, 0, 0};
      mma_s8_k16(dd, a[0], a[1], *reinterpret_cast<const uint32_t*>(tok + 16 * s + 4 * c));
      const int sa = static_cast<int8_t>(sc[0][s >> 2] >> (8 * (s & 3)));
      const int sb = static_cast<int8_t>(sc[1][s >> 2] >> (8 * (s & 3)));
      isum[0] += sa * dd[0];
      isum[1] += sa * dd[1];
      isum[2] += sb * dd[2];
      isum[3] += sb * dd[3];
    }
    // k slots 2c, 2c + 1 and 2c + 8, 2c + 9 are sub-blocks 2c, 2c + 1 and 2c + 8, 2c + 9.
    const auto scales = [c](uint32_t word) {
      const int lo = static_cast<int8_t>(word >> (16 * (c & 1))),
                hi = static_cast<int8_t>(word >> (16 * (c & 1) + 8));
      return half2_bits(__halves2half2(__int2half_rn(lo), __int2half_rn(hi)));
    };
    float fo[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const uint32_t* bs = reinterpret_cast<const uint32_t*>(tok + kBsumAt);
    const bool upper = c >= 2;  // selects, not an index by c: that would put sc in local memory
    mma_f16(fo, scales(upper ? sc[0][1] : sc[0][0]), scales(upper ? sc[1][1] : sc[1][0]),
            scales(upper ? sc[0][3] : sc[0][2]), scales(upper ? sc[1][3] : sc[1][2]), bs[c], bs[4 + c]);
#pragma unroll
    for (int i = 0; i < 4; ++i)
      v[i] = __fmul_rn(half_bits_to_float(d[i >> 1]), __int2float_rn(isum[i] - 32 * __float2int_rn(fo[i])));
  }
};

// x rounded as stage_q8 rounds it, for the GEMVs that read it from memory: record (t, sb) (row t,
// columns 256 sb .. 256 sb + 255) at out + (t * n_sb + sb) * kRecBytes. A warp per record.
__device__ __forceinline__ void quantize_record(CFMat x, int64_t rec, int lane, unsigned char* out) {
  const int64_t n_sb = x.cols / 256;
  if (rec >= x.rows * n_sb) return;
  const int64_t t = rec / n_sb, sb = rec - t * n_sb;
  unsigned char* r = out + rec * kRecBytes;
  const float d = stage_q8(q8_cols(x.p + t * x.ld + 256 * sb, lane), lane, r);
  if (lane == 0) *reinterpret_cast<float*>(r + kDAt) = d;
}

__global__ void __launch_bounds__(kGemvWarps * 32) quantize_q8_kernel(CFMat x, unsigned char* out) {
  allow_dependents();
  wait_for_inputs();
  quantize_record(x, int64_t{blockIdx.x} * kGemvWarps + (threadIdx.x >> 5), threadIdx.x & 31, out);
}

// Rows of K's type (Q4KInt8: K loads a super-block's weights and forms its sums). A block of 8 warps
// computes 16 rows; warp w takes super-blocks w, w + 8, ..., and the warps' partial sums are added in a
// fixed order at the end. (A Q6_K kind, codes 0..63 on m16n8k16 MMAs, measured slower than the Q6_K
// CUDA-core GEMV: Llama-3.1-8B Q4_K_M decode 326 against 345 tok/s, H200.)
//
// A single token (NT = 1): each warp rounds its super-block's activations into its shared memory. NT = 8
// (2 or more tokens) reads them from the quantize pass (`pre`; rounding 8 tokens in every block would cost
// several times the MMAs, and rounding 2 or 4 tokens in every block measured 6 and 16 % slower than the
// pass for Q4_K_M decode, 15 and 30 % for Q8_0; for one token the pass's launch costs more than it saves),
// and steps of more than 8 tokens run as `tiles` tiles of 8 tokens, the tiles of a row block in neighbouring
// blocks (so its weights come from L2 after the first). Loading the next super-block's weights ahead (double
// buffering in registers) measured slower for Q4_K: 113 registers, half the resident warps.
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
  // The first super-block's weights are loaded while the previous kernel finishes.
  K wt;
  if (warp < n_blocks) wt.load(rows, warp, c);
  wait_for_inputs();
  const int nt = static_cast<int>(x.rows);
  // Lane groups past the last token read the last token (their results are never stored).
  const int tg = min(g, nt - 1), t0 = min(2 * c, nt - 1), t1 = min(2 * c + 1, nt - 1);
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t sb = warp; sb < n_blocks; sb += kGemvWarps) {
    if (sb != warp) wt.load(rows, sb, c);
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
        const float d = stage_q8(q8_cols(x.p + t * x.ld + 256 * sb, lane), lane, toks[warp][t]);
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

// ---- Q8_0, weights streamed through shared memory (gemv.cuh) ----
//
// Block b of a step is one m16n8k32 MMA: lane (g, c) holds codes 4c .. 4c + 3 and 16 + 4c .. + 3 of rows g
// and g + 8 (the k slots of those columns, so the fragment words are conflict-free in the padded stage),
// and the same columns of its token. The integer result (|sum| <= 32 * 128 * 127 < 2^22) becomes a float
// by the exponent trick (two full-rate instructions; the conversion instruction runs at a quarter rate)
// and is scaled by the rows' block scales; a step's sum, in units of the token's scale, is then scaled by
// it. For a single token (!kPre) each warp rounds its step's activations (loaded an iteration ahead)
// into its shared memory; kPre (2 or more tokens) reads the quantize pass's records, and a block computes
// kTiles tiles of 8 tokens (steps of more than 8), each weight fragment read from shared memory once for
// all of them. A tile's arithmetic is the same whatever the other tiles of its block, so the tiling does
// not change a token's bits.
template <bool kPre, int kTileCount>
struct Q8_0Int8Step {
  static constexpr int kTiles = kTileCount;
  static_assert(kPre || kTiles == 1);
  static constexpr size_t kXBytes = kPre ? 0 : kTokBytes + 16;  // the codes, then the scale
  CFMat x;                                                      // the block's tokens
  const unsigned char* pre;  // the record of its first token's first step (kPre)
  int64_t stride;            // bytes from a token's records to the next token's
  using XRegs = std::conditional_t<kPre, NoX, Q8Cols>;
  __device__ XRegs load_x(const float*, int64_t st, bool) const {
    if constexpr (kPre)
      return {};
    else
      return q8_cols(x.p + 256 * st, threadIdx.x & 31);
  }
  __device__ void stage(int64_t, unsigned char* xs, const XRegs& xr) const {
    if constexpr (!kPre) {
      const int lane = threadIdx.x & 31;
      const float d = stage_q8(xr, lane, xs);
      if (lane == 0) *reinterpret_cast<float*>(xs + kTokBytes) = d;
    }
  }
  __device__ __forceinline__ void operator()(float (&acc)[kTiles][4], const unsigned char* a,
                                             const unsigned char* b, const float*, bool, int64_t st,
                                             const unsigned char* xs, const XRegs&) const {
    const int c = threadIdx.x & 3, g = (threadIdx.x & 31) >> 2, nt = static_cast<int>(x.rows);
    // The step's weight fragments and block scales, for all tiles.
    uint32_t aw[8][4];
    float dw[8][2];
#pragma unroll
    for (int blk = 0; blk < 8; ++blk) {
      const unsigned char* pa = a + blk * sizeof(BlockQ8_0);
      const unsigned char* pb = b + blk * sizeof(BlockQ8_0);
      const bool odd = blk & 1;
      aw[blk][0] = q8_0_word(pa + 2 + 4 * c, odd), aw[blk][2] = q8_0_word(pa + 18 + 4 * c, odd);
      aw[blk][1] = q8_0_word(pb + 2 + 4 * c, odd), aw[blk][3] = q8_0_word(pb + 18 + 4 * c, odd);
      dw[blk][0] = half_bits_to_float(*reinterpret_cast<const uint16_t*>(pa));
      dw[blk][1] = half_bits_to_float(*reinterpret_cast<const uint16_t*>(pb));
    }
#pragma unroll
    for (int j = 0; j < kTiles; ++j) {
      if (j > 0 && 8 * j >= nt) break;
      // The lane's B-fragment token and the tokens of its tile columns 2c, 2c + 1 (lane groups past the
      // last token read the last token; their results are never stored).
      const int last = min(8, nt - 8 * j) - 1;
      const int tg = min(g, last), t0 = min(2 * c, last), t1 = min(2 * c + 1, last);
      const unsigned char* tok;
      float xd[2];
      if constexpr (kPre) {
        const unsigned char* r = pre + 8 * j * stride + st * kRecBytes;
        tok = r + tg * stride;
        xd[0] = __ldg(reinterpret_cast<const float*>(r + t0 * stride + kDAt));
        xd[1] = __ldg(reinterpret_cast<const float*>(r + t1 * stride + kDAt));
      } else {
        tok = xs;  // every lane group reads the one token
        xd[0] = xd[1] = *reinterpret_cast<const float*>(xs + kTokBytes);
      }
      uint32_t bw[8][2];
#pragma unroll
      for (int blk = 0; blk < 8; ++blk) {
        const unsigned char* p = tok + 32 * blk + 4 * c;
        if constexpr (kPre) {
          bw[blk][0] = __ldg(reinterpret_cast<const uint32_t*>(p));
          bw[blk][1] = __ldg(reinterpret_cast<const uint32_t*>(p + 16));
        } else {
          bw[blk][0] = *reinterpret_cast<const uint32_t*>(p);
          bw[blk][1] = *reinterpret_cast<const uint32_t*>(p + 16);
        }
      }
      float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
      for (int blk = 0; blk < 8; ++blk) {
        int d[4] = {0, 0, 0, 0};
        mma_s8(d, aw[blk][0], aw[blk][1], aw[blk][2], aw[blk][3], bw[blk][0], bw[blk][1]);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float f = __fsub_rn(__int_as_float(d[i] + 0x4B400000), 12582912.0f);  // 1.5 * 2^23
          v[i] = __fmaf_rn(dw[blk][i >> 1], f, v[i]);
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[j][i] = __fmaf_rn(xd[i & 1], v[i], acc[j][i]);
    }
  }
};

// Block b computes row block b / groups for tokens 8 kTiles (b % groups) .. (a group of up to kTiles
// tiles); the groups of a row block are neighbouring blocks, so its weights come from L2 after the first.
template <bool kPre, int kTiles, class L>
__global__ void __launch_bounds__(kGemvWarps * 32, kTiles > 1 || L::kStages > 2 ? 2 : 3)
    q8_0_int8_kernel(Group group, CFMat x_all, unsigned groups, const unsigned char* pre) {
  const int64_t first = int64_t{8} * kTiles * (blockIdx.x % groups);
  const CFMat x{x_all.p + first * x_all.ld, min(int64_t{8} * kTiles, x_all.rows - first), x_all.cols,
                x_all.ld};
  const int64_t stride = (x.cols / 256) * kRecBytes;
  staged_gemv<L>(group, blockIdx.x / groups, x, first,
                 Q8_0Int8Step<kPre, kTiles>{x, pre + first * stride, stride});
}

// Tiles of 8 tokens a block for steps of more than 8 tokens.
constexpr int kQ8_0Tiles = 4;

// ---- Mixture of experts ----
// Expert e's grouped pairs offsets[e] .. offsets[e + 1] - 1 run as tiles of up to 8 pairs, as the tiles
// of a batched step above; a tile's pairs are the token columns of its MMAs, so a pair's result does not
// depend on the other pairs of its tile, and decode, batched and prefill steps give a pair the same bits.
// (Blocks of four tiles of one expert, each weight super-block decoded once for all four, measured 2x
// slower for 512-token prefill: 148 registers, one block an SM.)

// The tile list: tiles[i] = the first grouped pair of tile i, experts in increasing order (an expert's
// tiles neighbours in the grid, so its weights come from L2 after the first), -1 past the last tile.
// One block.
__device__ void build_tiles(const Routing& rt, int32_t* tiles, int64_t max_tiles) {
  __shared__ int32_t sums[kGemvWarps * 32];
  const int tid = static_cast<int>(threadIdx.x), n = static_cast<int>(blockDim.x);
  const int n_exp = static_cast<int>(rt.n_experts), per = (n_exp + n - 1) / n;
  const int e0 = min(tid * per, n_exp), e1 = min(e0 + per, n_exp);
  int mine = 0;
  for (int e = e0; e < e1; ++e) mine += (rt.offsets[e + 1] - rt.offsets[e] + 7) / 8;
  sums[tid] = mine;
  __syncthreads();
  for (int off = 1; off < n; off *= 2) {  // inclusive scan
    const int v = tid >= off ? sums[tid - off] : 0;
    __syncthreads();
    sums[tid] += v;
    __syncthreads();
  }
  int at = sums[tid] - mine;
  for (int e = e0; e < e1; ++e)
    for (int32_t p = rt.offsets[e]; p < rt.offsets[e + 1]; p += 8) tiles[at++] = p;
  for (int64_t i = sums[n - 1] + tid; i < max_tiles; i += n) tiles[i] = -1;
}

// The last block builds the tile list, the others round x's rows into records.
__global__ void __launch_bounds__(kGemvWarps * 32)
    expert_prepare_kernel(CFMat x, unsigned char* rec, Routing rt, int32_t* tiles, int64_t max_tiles) {
  allow_dependents();
  wait_for_inputs();
  if (blockIdx.x == gridDim.x - 1)
    build_tiles(rt, tiles, max_tiles);
  else
    quantize_record(x, int64_t{blockIdx.x} * kGemvWarps + (threadIdx.x >> 5), threadIdx.x & 31, rec);
}

// Block (tile blockIdx.x, rows 16 blockIdx.y ..): int8_gemv_kernel's arithmetic for the tile's pairs,
// each reading the record of its activation row (its token with per_token, else its own grouped row).
// With kGateUp, warps 0-3 take the gate matrix and warps 4-7 the up matrix, and out = silu(gate) * up.
template <class K, bool kGateUp>
__global__ void __launch_bounds__(kGemvWarps * 32)
    expert_int8_kernel(EMat w, EMat u, Routing rt, bool per_token, const int32_t* tiles,
                       const unsigned char* pre, FMat y) {
  constexpr int kSplit = kGateUp ? kGemvWarps / 2 : kGemvWarps;  // warps per matrix
  __shared__ float red[kGemvWarps * 32 * 4];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
  const int64_t row0 = int64_t{blockIdx.y} * 16, n_sb = w.cols / 256;
  wait_for_inputs();
  const int32_t first = tiles[blockIdx.x];
  if (first < 0) return;
  const int32_t e = rt.ids[rt.order[first]];
  const int nt = min(8, rt.offsets[e + 1] - first);
  const EMat& m = kGateUp && warp >= kSplit ? u : w;
  const uint8_t* base = static_cast<const uint8_t*>(m.mats[e]);
  const uint8_t* const rows[2] = {base + min(row0 + g, m.rows - 1) * m.row_bytes,
                                  base + min(row0 + g + 8, m.rows - 1) * m.row_bytes};
  // Lane groups past the last pair read the last pair (their results are never stored).
  const auto record = [&](int t) {
    const int64_t i = first + min(t, nt - 1);
    return pre + (per_token ? rt.order[i] / rt.k : i) * n_sb * kRecBytes;
  };
  const unsigned char *tok = record(g), *r0 = record(2 * c), *r1 = record(2 * c + 1);
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t sb = warp % kSplit; sb < n_sb; sb += kSplit) {
    K wt;
    wt.load(rows, sb, c);
    const int64_t at = sb * kRecBytes;
    const float xd[2] = {__ldg(reinterpret_cast<const float*>(r0 + at + kDAt)),
                         __ldg(reinterpret_cast<const float*>(r1 + at + kDAt))};
    float v[4];
    wt.dot(tok + at, c, v);
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[i] = __fmaf_rn(xd[i & 1], v[i], acc[i]);
  }
  store_tiles(red, acc);
  if (warp != 0) return;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float v = sum_tiles<0, kSplit>(red, i);
    if constexpr (kGateUp) v = silu_times(v, sum_tiles<kSplit, kGemvWarps>(red, i));
    const int t = 2 * c + (i & 1);
    const int64_t r = row0 + g + 8 * (i >> 1);
    if (t < nt && r < w.rows) y.p[(first + t) * y.ld + r] = v;
  }
}

// An upper bound of the number of tiles: sum_e ceil(c_e / 8) <= (pairs + 7 * experts used) / 8.
int64_t max_expert_tiles(const Routing& r) {
  const int64_t pairs = r.n_tokens * r.k, used = std::min(r.n_experts, pairs);
  return std::min(pairs, (pairs + 7 * used) / 8);
}

size_t records_bytes(CFMat x) {
  return (static_cast<size_t>(x.rows * (x.cols / 256)) * kRecBytes + 255) / 256 * 256;
}

}  // namespace

bool expert_int8_applies(const EMat& w, CFMat x) {
  // Q4_K reads 16-byte runs of its rows (expert matrices start 256-byte aligned or a multiple of the
  // row length into a stack); Q6_K reads 16-bit words.
  const bool rows_ok = w.type == DType::Q4_K ? w.row_bytes % 16 == 0 : w.type == DType::Q6_K;
  return rows_ok && w.cols % 256 == 0 && x.cols == w.cols && x.ld % 4 == 0 && aligned16(x.p);
}

size_t expert_int8_scratch_bytes(CFMat x, const Routing& r) {
  return records_bytes(x) + static_cast<size_t>(max_expert_tiles(r)) * sizeof(int32_t);
}

cudaError_t expert_int8_gemv(cudaStream_t s, const EMat& w, const EMat* up, CFMat x, bool per_token,
                             const Routing& r, FMat out, void* scratch) {
  if (r.n_tokens == 0 || w.rows == 0) return cudaSuccess;
  auto* rec = static_cast<unsigned char*>(scratch);
  auto* tiles = reinterpret_cast<int32_t*>(rec + records_bytes(x));
  const int64_t max_tiles = max_expert_tiles(r), records = x.rows * (x.cols / 256);
  const unsigned threads = kGemvWarps * 32;
  launch(expert_prepare_kernel, static_cast<unsigned>((records + kGemvWarps - 1) / kGemvWarps + 1), threads,
         0, s, x, rec, r, tiles, max_tiles);
  const dim3 grid(static_cast<unsigned>(max_tiles), static_cast<unsigned>((w.rows + 15) / 16));
  const auto run = [&](auto kind) {
    using K = decltype(kind);
    if (up)
      launch(expert_int8_kernel<K, true>, grid, threads, 0, s, w, *up, r, per_token, tiles, rec, out);
    else
      launch(expert_int8_kernel<K, false>, grid, threads, 0, s, w, w, r, per_token, tiles, rec, out);
  };
  if (w.type == DType::Q4_K)
    run(Q4KInt8{});
  else
    run(Q6KInt8{});
  return cudaGetLastError();
}

bool int8_gemv_applies(const WMat& w, CFMat x) {
  // 16-byte activation runs and weight-row heads (Q4_K) or copies (Q8_0), 256-column super-blocks.
  return (w.type == DType::Q4_K || w.type == DType::Q8_0) && x.rows <= kKquantMaxTokens && x.ld % 4 == 0 &&
         aligned16(x.p) && aligned16(w.p) && w.row_bytes % 16 == 0 && w.cols % 256 == 0;
}

size_t int8_gemv_scratch_bytes(CFMat x) {
  return x.rows > 1 ? static_cast<size_t>(x.rows * (x.cols / 256)) * kRecBytes : 0;
}

cudaError_t int8_gemv_quantize(cudaStream_t s, CFMat x, void* scratch) {
  if (x.rows <= 1) return cudaSuccess;
  const int64_t records = x.rows * (x.cols / 256);
  return launch(quantize_q8_kernel, static_cast<unsigned>((records + kGemvWarps - 1) / kGemvWarps),
                kGemvWarps * 32, 0, s, x, static_cast<unsigned char*>(scratch));
}

cudaError_t init_int8_gemv() {
  for (cudaError_t e :
       {allow_staged_smem<Q8_0Layout, Q8_0Int8Step<false, 1>>(q8_0_int8_kernel<false, 1, Q8_0Layout>),
        allow_staged_smem<Q8_0DeepLayout, Q8_0Int8Step<false, 1>>(q8_0_int8_kernel<false, 1, Q8_0DeepLayout>),
        allow_staged_smem<Q8_0Layout, Q8_0Int8Step<true, 1>>(q8_0_int8_kernel<true, 1, Q8_0Layout>),
        allow_staged_smem<Q8_0Layout, Q8_0Int8Step<true, kQ8_0Tiles>>(
            q8_0_int8_kernel<true, kQ8_0Tiles, Q8_0Layout>)})
    if (e != cudaSuccess) return e;
  return cudaSuccess;
}

cudaError_t int8_gemv(cudaStream_t s, DType t, unsigned blocks, const Group& group, CFMat x, void* scratch,
                      int sm_count) {
  const unsigned threads = kGemvWarps * 32;
  const auto* pre = static_cast<const unsigned char*>(scratch);
  if (t != DType::Q4_K && t != DType::Q8_0) return cudaErrorInvalidValue;
  if (x.rows == 1) {  // each warp rounds its own step's activations
    if (t == DType::Q4_K)
      return launch(int8_gemv_kernel<Q4KInt8, 1>, blocks, threads, 0, s, group, x, 1u, pre);
    // Launches of at most two blocks per SM take the deeper stages.
    const auto q8_0 = [&](auto layout) {
      using L = decltype(layout);
      return launch(q8_0_int8_kernel<false, 1, L>, blocks, threads, staged_smem<L, Q8_0Int8Step<false, 1>>(),
                    s, group, x, 1u, pre);
    };
    return blocks <= 2u * static_cast<unsigned>(sm_count) ? q8_0(Q8_0DeepLayout{}) : q8_0(Q8_0Layout{});
  }
  const auto tiles = static_cast<unsigned>((x.rows + 7) / 8);  // of 8 tokens
  if (t == DType::Q4_K)
    return launch(int8_gemv_kernel<Q4KInt8, 8>, blocks * tiles, threads, 0, s, group, x, tiles, pre);
  const auto q8_0 = [&](auto k) {
    constexpr int kTiles = decltype(k)::value;
    const unsigned groups = (tiles + kTiles - 1) / kTiles;
    return launch(q8_0_int8_kernel<true, kTiles, Q8_0Layout>, blocks * groups, threads,
                  staged_smem<Q8_0Layout, Q8_0Int8Step<true, kTiles>>(), s, group, x, groups, pre);
  };
  return tiles > 1 ? q8_0(std::integral_constant<int, kQ8_0Tiles>{}) : q8_0(std::integral_constant<int, 1>{});
}

}  // namespace ferrum::cuda
