// Paged attention with an online softmax on tensor cores: one kernel for every token, prefill or decode.
//
// A block takes up to 16 rows, each a (token, query head) pair of one sequence and one kv head (the M of
// its MMAs), and its 8 warps split the sequence's keys in tiles of 16: warp w takes the tiles whose index
// (key / 16, counted from key 0) is w modulo 8, in increasing order, and the warps' partial softmax states
// are merged in warp order at the end. The rows of an MMA are independent, and a key outside a row's
// range scores -inf (a zero weight, which adds nothing), so a row's result depends only on its query and
// its own sequence's keys: the same bits alone or batched, in a decode step or a prefill chunk (a
// sequence recomputed after preemption continues as it would have), whichever rows share its block.
//
// The keys are taken in chunks of kAttnChunkKeys (kernels.h), counted from the sequence's key 0: the
// warps' states are merged per chunk, and the chunks' states combined in order (fold below). One block
// takes all chunks of its rows, or, when the step has too few blocks to fill the GPU (decoding a few
// long sequences: one block per kv head would stream the whole cache through a few SMs), each of
// `splits` blocks takes every splits-th chunk and leaves the chunk states in scratch memory, and the
// last block to finish combines them with the same operations.
//
// Products are three TF32 MMAs per step (lo x hi, hi x lo, hi x hi of each operand split into a TF32 hi
// and the TF32 of the remainder): about 21 mantissa bits against the float32 KV cache. This replaced a
// kernel of float32 FMAs, a token a block: Llama-3.1-8B shape with 4 layers in F16, H200, 482 -> 146 µs a
// layer at 512 tokens (ncu); pp512 114 000 -> 161 000 tok/s, pp2048 67 000 -> 151 000, decode unchanged.
#include <algorithm>
#include <climits>
#include <cmath>
#include <type_traits>

#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/mma.cuh"

namespace ferrum::cuda {

namespace {

constexpr int kWarps = 8;      // warps of a block, splitting its keys
constexpr int kTileKeys = 16;  // keys a warp takes at once: two n8 MMA tiles
constexpr int kRows = 16;      // (token, head) rows of a block
constexpr int kChunkTiles = static_cast<int>(kAttnChunkKeys / kTileKeys);
static_assert(kChunkTiles % kWarps == 0, "a chunk's tiles start at warp 0");
constexpr size_t kMaxScratchBytes = size_t{256} << 20;  // larger split steps take the chunks in one block
constexpr float kLog2e = 1.4426950408889634f;

struct Tf32 {
  uint32_t hi, lo;
};

// x = hi + lo, both TF32: hi rounded to nearest on its 10 mantissa bits (integer ops, which issue faster
// than cvt.rna.tf32), lo the exact remainder cut to TF32 (about 2^-21 of x lost).
__device__ __forceinline__ Tf32 split(float x) {
  const uint32_t hi = (__float_as_uint(x) + 0x1000u) & 0xffffe000u;
  return {hi, __float_as_uint(x - __uint_as_float(hi)) & 0xffffe000u};
}

// A * B with split operands: big += A.hi * B.hi and small += the two cross products, small ones first
// (big and small may be one tile).
__device__ __forceinline__ void mma3(float (&big)[4], float (&small)[4], const Tf32 (&a)[4], Tf32 b0,
                                     Tf32 b1) {
  mma_tf32(small, a[0].lo, a[1].lo, a[2].lo, a[3].lo, b0.hi, b1.hi);
  mma_tf32(small, a[0].hi, a[1].hi, a[2].hi, a[3].hi, b0.lo, b1.lo);
  mma_tf32(big, a[0].hi, a[1].hi, a[2].hi, a[3].hi, b0.hi, b1.hi);
}

__device__ __forceinline__ float4 load4(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }

__device__ __forceinline__ float lane_of(const float4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Key positions are int: kv_end is.
__device__ __forceinline__ int first_key(const AttnArgs& a, int end) {
  return a.window > 0 && end > a.window ? static_cast<int>(end - a.window) : 0;
}

// The query fragments in shared memory, split, for 16 dims (a "pair" of k8 steps) at a time: step 2p takes
// dims 16p + 4c and 16p + 4c + 1 as its k = c and c + 4, step 2p + 1 dims 16p + 4c + 2 and + 3, so that
// each lane of a key's B fragment loads 4 consecutive floats. Words [(p * 4 + j) * 32 + lane][4]: j = 0, 1
// the hi parts of steps 2p, 2p + 1; j = 2, 3 their lo parts (consecutive lanes, consecutive 16 bytes).
__device__ __forceinline__ uint32_t* q_frag(uint32_t* qs, int p, int j, int lane) {
  return qs + ((p * 4 + j) * 32 + lane) * 4;
}

// Combining chunk states in order. A state is a row's max score m (log2 units), its sum of weights l
// and its weighted sums of values, all relative to m; chunks with l = 0 (no key of the row) are skipped.
// Written with explicit roundings so that the combination in a block and in the last of a split step's
// blocks are the same operations.
struct FoldWeights {
  float running, chunk;  // the weights of the running state and of the chunk's
  bool first;            // no chunk folded yet: the chunk's state is taken as it is
};
__device__ __forceinline__ FoldWeights fold_weights(float m, float l, float chunk_m) {
  if (l == 0.0f) return {0.0f, 1.0f, true};
  const float mn = fmaxf(m, chunk_m);
  return {exp2f(m - mn), exp2f(chunk_m - mn), false};
}
__device__ __forceinline__ float fold(float running, float chunk, FoldWeights w) {
  return w.first ? chunk : __fmaf_rn(running, w.running, __fmul_rn(chunk, w.chunk));
}
__device__ __forceinline__ float fold_max(float m, float chunk_m, FoldWeights w) {
  return w.first ? chunk_m : fmaxf(m, chunk_m);
}

template <int D>
constexpr int smem_words() {
  return (32 * D / 16) * 4 * 32 * 4 + kWarps * kRows * 32 * D + kWarps * kRows * 2 + kRows * 32 * D +
         4 * kRows + static_cast<int>(kRows * sizeof(FoldWeights) / 4) + 1;
}

// Rows (token ts + r / nh, head h0 + r % nh) for r < n_tok * nh, all of sequence `seq`. D: head dims in
// 32s (the head padded with zeros). V's dims are permuted over the PV MMAs' n8 tiles so that a lane loads
// 4 consecutive floats of a value row: n-tile 4u + i, column n is dim 32u + 4n + i.
template <int D>
__device__ void attend_rows(const AttnArgs& a, const AttnSplit& sp, int64_t ts, int n_tok, int64_t h0, int nh,
                            int64_t kvh, int32_t seq, CFMat q, CFMat kc, CFMat vc, FMat out, uint32_t* sm) {
  constexpr int kDims = 32 * D, kPairs = kDims / 16, kN = kDims / 8;
  uint32_t* qs = sm;
  float* parts = reinterpret_cast<float*>(sm + kPairs * 512);  // [kWarps][kN][32 lanes][4]
  float* ml = parts + kWarps * kRows * kDims;                  // [kWarps][kRows] of (max, sum)
  float* run = ml + kWarps * kRows * 2;                        // [kN][32][4]: the rows' running sums
  float* total = run + kRows * kDims;                          // [kRows]: the chunk's sums of weights,
  float* chunk_max = total + kRows;                            //   its maxima,
  float* run_m = chunk_max + kRows;                            //   and the running ones
  float* run_l = run_m + kRows;
  auto* fold_w = reinterpret_cast<FoldWeights*>(run_l + kRows);  // [kRows]: this chunk's, per row
  auto* last_block = reinterpret_cast<unsigned*>(fold_w + kRows);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
  const int rows = n_tok * nh;
  const int64_t hd = a.head_dim, koff = kvh * hd;
  const float qscale = a.scale * kLog2e;  // scores in log2 units: exp2 of their differences

  // This lane's rows g and g + 8 (token ts + tok, head h0 + head; the divisions once here): their key
  // ranges (empty for rows past the block's), and the union. The index arrays are read before
  // wait_for_inputs (common.cuh): the host copies them in before the step's kernels.
  int first[2], end[2], tok[2], head[2], lo = INT_MAX, hi = 0;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = g + 8 * h;
    tok[h] = r / nh;
    head[h] = r - tok[h] * nh;
    end[h] = r < rows ? a.kv_end[ts + tok[h]] : 0;
    first[h] = r < rows ? first_key(a, end[h]) : 0;
  }
  for (int i = 0; i < n_tok; ++i) {
    const int e = a.kv_end[ts + i];
    lo = min(lo, first_key(a, e));
    hi = max(hi, e);
  }
  // The chunks holding keys of the rows; a split step's block z takes chunks c_lo + z + k * splits.
  constexpr int kChunk = static_cast<int>(kAttnChunkKeys);
  const int c_lo = lo / kChunk, c_end = hi > lo ? (hi - 1) / kChunk + 1 : c_lo;
  const bool spread = sp.splits > 1 && c_end - c_lo > 1;
  if (blockIdx.z >= (spread ? c_end - c_lo : 1)) return;
  // Row r's outputs (token ts + r / nh, head h0 + r % nh).
  const auto out_row = [&](int r) { return out.p + (ts + r / nh) * out.ld + (h0 + r % nh) * hd; };
  // Where row r's state of chunk ch goes in a split step: (max, sum of weights, sums of values).
  const auto state_of = [&](int64_t row, int ch) {
    return sp.scratch + (row * sp.max_chunks + ch) * (hd + 2);
  };
  const auto state = [&](int r, int ch) { return state_of((ts + r / nh) * a.n_heads + h0 + r % nh, ch); };
  // The lane's rows g and g + 8 (fragment rows of the products and of the merge below).
  float* lane_out[2];
  int64_t lane_state[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    lane_out[h] = out.p + (ts + tok[h]) * out.ld + (h0 + head[h]) * hd;
    lane_state[h] = (ts + tok[h]) * a.n_heads + h0 + head[h];
  }

  const int32_t* table = a.block_tables + int64_t(seq) * a.max_blocks;
  const int bs = static_cast<int>(a.block_size);
  const int bs_log = (bs & (bs - 1)) == 0 ? __ffs(bs) - 1 : -1;  // block sizes are powers of two in practice
  const auto slot = [&](int j) {
    return bs_log >= 0 ? (int64_t(table[j >> bs_log]) << bs_log) | (j & (bs - 1))
                       : int64_t(table[j / bs]) * bs + j % bs;
  };
  const int kt_lo = lo / kTileKeys, kt_hi = (hi + kTileKeys - 1) / kTileKeys;
  // Tile kt's key rows j0 + 8 nt + g and value rows j0 + 8 ks + 2c + e of this lane (dims from koff); keys
  // and values outside the block's union are not read (null: they stay zero, their slots may hold anything).
  const auto key_rows = [&](int kt, const float*(&kr)[2]) {
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      const int j = kt * kTileKeys + 8 * nt + g;
      kr[nt] = j >= lo && j < hi ? kc.p + slot(j) * kc.ld + koff : nullptr;
    }
  };
  const auto value_rows = [&](int kt, const float*(&vr)[2][2]) {
#pragma unroll
    for (int ks = 0; ks < 2; ++ks)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int j = kt * kTileKeys + 8 * ks + 2 * c + e;
        vr[ks][e] = j >= lo && j < hi ? vc.p + slot(j) * vc.ld + koff : nullptr;
      }
  };
  const auto load_keys = [&](const float* const(&kr)[2], float4(&kv)[2][kPairs]) {
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int p = 0; p < kPairs; ++p)
        kv[nt][p] = kr[nt] && 16 * p + 4 * c < hd ? load4(kr[nt] + 16 * p + 4 * c)
                                                  : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  };
  // Value rows 8 ks + 2c + e of the tile (dims 32u + 4g ..). Heads of up to 128 dims load them with the
  // keys; larger ones just before their products, which keeps them out of local memory.
  constexpr bool kValuesEarly = D <= 4;
  const auto load_values = [&](int ks, const float* const(&vr)[2][2], float4(&vv)[2][2][D]) {
#pragma unroll
    for (int e = 0; e < 2; ++e)
#pragma unroll
      for (int u = 0; u < D; ++u)
        vv[ks][e][u] = vr[ks][e] && 32 * u + 4 * g < hd ? load4(vr[ks][e] + 32 * u + 4 * g)
                                                        : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  };
  // This warp's first tile of chunk ch.
  const auto first_tile = [&](int ch) {
    const int t_begin = max(kt_lo, ch * kChunkTiles);
    return t_begin + ((warp - t_begin) % kWarps + kWarps) % kWarps;
  };
  const auto tile_end = [&](int ch) { return min(kt_hi, (ch + 1) * kChunkTiles); };
  // The first tile's rows are looked up before the wait and their cache lines fetched into L1 right after
  // it, while the queries are staged: a decode step at a few keys is one tile a warp, a chain of dependent
  // loads. (Loading the tile into registers there instead kept them live across the tile loop: spills.)
  const int ch0 = c_lo + static_cast<int>(blockIdx.z);
  const bool prefetch = first_tile(ch0) < tile_end(ch0);
  const float* kr0[2] = {nullptr, nullptr};
  const float* vr0[2][2] = {{nullptr, nullptr}, {nullptr, nullptr}};
  if (prefetch) {
    key_rows(first_tile(ch0), kr0);
    value_rows(first_tile(ch0), vr0);
  }
  wait_for_inputs();
  if (prefetch) {
    // A row is D lines of 128 bytes: lane c fetches lines c, c + 4, .. of its key rows, lane g line g of
    // its value rows (the lines its loads below touch are all fetched by some lane of the warp).
    for (int u = c; u < D; u += 4)
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
        if (kr0[nt] && 32 * u < hd) prefetch_l1(kr0[nt] + 32 * u);
    if (g < D && 32 * g < hd)
#pragma unroll
      for (int ks = 0; ks < 2; ++ks)
#pragma unroll
        for (int e = 0; e < 2; ++e)
          if (vr0[ks][e]) prefetch_l1(vr0[ks][e] + 32 * g);
  }

  __syncthreads();  // the previous rows' readers are done with shared memory
  if (threadIdx.x < kRows) {
    run_m[threadIdx.x] = -INFINITY;
    run_l[threadIdx.x] = 0.0f;
  }
  // Thread i stages 4 dims of one row for lane i % 32 of pair i / 64 (consecutive lanes, consecutive words):
  // row g + 8 (warp % 2), as blockDim.x is a multiple of 64.
  static_assert(kWarps % 2 == 0);
  const int q_half = warp & 1;
  const float* q_row =
      q.p + (ts + (q_half ? tok[1] : tok[0])) * q.ld + (h0 + (q_half ? head[1] : head[0])) * hd;
  const bool q_live = g + 8 * q_half < rows;
  for (int i = threadIdx.x; i < kRows * kDims / 4; i += blockDim.x) {
    const int p = i >> 6, d = 16 * p + 4 * c;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (q_live && d < hd) v = load4(q_row + d);
    const float e[4] = {v.x * qscale, v.y * qscale, v.z * qscale, v.w * qscale};
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      const Tf32 x0 = split(e[2 * s]), x1 = split(e[2 * s + 1]);
      q_frag(qs, p, s, lane)[q_half] = x0.hi;
      q_frag(qs, p, s, lane)[2 + q_half] = x1.hi;
      q_frag(qs, p, 2 + s, lane)[q_half] = x0.lo;
      q_frag(qs, p, 2 + s, lane)[2 + q_half] = x1.lo;
    }
  }
  __syncthreads();

  for (int ch = ch0; ch < c_end; ch += spread ? sp.splits : 1) {
    float o[kN][4] = {};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // per row; l this lane's part
    for (int kt = first_tile(ch), t_end = tile_end(ch); kt < t_end; kt += kWarps) {
      const int j0 = kt * kTileKeys;
      const float* kr[2];
      const float* vr[2][2];
      key_rows(kt, kr);
      value_rows(kt, vr);
      float4 kv[2][kPairs], vv[2][2][D];
      load_keys(kr, kv);
      if constexpr (kValuesEarly) {
        load_values(0, vr, vv);
        load_values(1, vr, vv);
      }

      // Scores: the hi x hi products and the small ones in separate accumulators (two shorter chains of
      // dependent MMAs), added at the end.
      float s[2][4] = {}, small[2][4] = {};
#pragma unroll
      for (int p = 0; p < kPairs; ++p) {
        const uint4 h0v = *reinterpret_cast<const uint4*>(q_frag(qs, p, 0, lane));
        const uint4 h1v = *reinterpret_cast<const uint4*>(q_frag(qs, p, 1, lane));
        const uint4 l0v = *reinterpret_cast<const uint4*>(q_frag(qs, p, 2, lane));
        const uint4 l1v = *reinterpret_cast<const uint4*>(q_frag(qs, p, 3, lane));
        const Tf32 a0[4] = {{h0v.x, l0v.x}, {h0v.y, l0v.y}, {h0v.z, l0v.z}, {h0v.w, l0v.w}};
        const Tf32 a1[4] = {{h1v.x, l1v.x}, {h1v.y, l1v.y}, {h1v.z, l1v.z}, {h1v.w, l1v.w}};
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
          mma3(s[nt], small[nt], a0, split(kv[nt][p].x), split(kv[nt][p].y));
          mma3(s[nt], small[nt], a1, split(kv[nt][p].z), split(kv[nt][p].w));
        }
      }
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[nt][e] += small[nt][e];

      // Online softmax of rows g (h = 0) and g + 8 (h = 1); lane holds keys 8 nt + 2c + {0, 1}.
      float corr[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int j = j0 + 8 * nt + 2 * c + e;
            float& v = s[nt][2 * h + e];
            v = j >= first[h] && j < end[h] ? v : -INFINITY;
            mx = fmaxf(mx, v);
          }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m[h], mx);
        // A tile with no key of the row leaves its state as it is (exp2(-inf) = 0 for the weights).
        corr[h] = m_new == -INFINITY ? 1.0f : exp2f(m[h] - m_new);
        float sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            float& v = s[nt][2 * h + e];
            v = m_new == -INFINITY ? 0.0f : exp2f(v - m_new);
            sum += v;
          }
        l[h] = l[h] * corr[h] + sum;
        m[h] = m_new;
      }
#pragma unroll
      for (int n = 0; n < kN; ++n) {
        o[n][0] *= corr[0];
        o[n][1] *= corr[0];
        o[n][2] *= corr[1];
        o[n][3] *= corr[1];
      }
      // O += P V: P's k8 step ks is the score tile nt = ks, its k = c and c + 4 the keys 8 ks + 2c and + 1.
#pragma unroll
      for (int ks = 0; ks < 2; ++ks) {
        if constexpr (!kValuesEarly) load_values(ks, vr, vv);
        const Tf32 pa[4] = {split(s[ks][0]), split(s[ks][2]), split(s[ks][1]), split(s[ks][3])};
#pragma unroll
        for (int u = 0; u < D; ++u)
#pragma unroll
          for (int i = 0; i < 4; ++i)
            mma3(o[4 * u + i], o[4 * u + i], pa, split(lane_of(vv[ks][0][u], i)),
                 split(lane_of(vv[ks][1][u], i)));
      }
    }

    // The chunk's state: the warps' states merged row by row in warp order. Each warp leaves its (max,
    // sum) and its output scaled to the rows' common max, then a thread per fragment adds the warps'
    // parts in order.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float lr = l[h];
      lr += __shfl_xor_sync(0xffffffffu, lr, 1);
      lr += __shfl_xor_sync(0xffffffffu, lr, 2);
      l[h] = lr;
      if (c == 0) {
        ml[(warp * kRows + g + 8 * h) * 2] = m[h];
        ml[(warp * kRows + g + 8 * h) * 2 + 1] = lr;
      }
    }
    __syncthreads();
    float ew[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = g + 8 * h;
      float mx = -INFINITY;
      for (int w = 0; w < kWarps; ++w)
        if (ml[(w * kRows + r) * 2 + 1] > 0.0f) mx = fmaxf(mx, ml[(w * kRows + r) * 2]);
      ew[h] = l[h] > 0.0f ? exp2f(m[h] - mx) : 0.0f;
      if (warp == 0 && c == 0) {
        float t = 0.0f;
        for (int w = 0; w < kWarps; ++w) {
          const float lw = ml[(w * kRows + r) * 2 + 1];
          t += lw > 0.0f ? lw * exp2f(ml[(w * kRows + r) * 2] - mx) : 0.0f;
        }
        total[r] = t;
        chunk_max[r] = mx;
        // One block taking every chunk: the row's weights for folding this chunk in, and its new state.
        if (!spread) {
          const FoldWeights w = fold_weights(run_m[r], run_l[r], mx);
          fold_w[r] = w;
          if (t > 0.0f) {
            run_l[r] = fold(run_l[r], t, w);
            run_m[r] = fold_max(run_m[r], mx, w);
          }
        }
      }
    }
    // Each lane's fragments, scaled, in fragment order (consecutive lanes, consecutive 16 bytes).
    auto* parts4 = reinterpret_cast<float4*>(parts);
#pragma unroll
    for (int n = 0; n < kN; ++n)
      parts4[(warp * kN + n) * 32 + lane] =
          make_float4(o[n][0] * ew[0], o[n][1] * ew[0], o[n][2] * ew[1], o[n][3] * ew[1]);
    __syncthreads();
    const bool last_chunk = ch + 1 >= c_end;
    // Thread i adds fragment i (n-tile i / 32 of lane i % 32, the thread's lane as blockDim.x is a multiple
    // of 32) over the warps, in warp order: rows g and g + 8, dims d and d + 4 of its n-tile. run holds the
    // running sums in the same order.
    for (int i = threadIdx.x; i < kN * 32; i += blockDim.x) {
      const int n = i >> 5;
      float4 s4 = parts4[i];
      for (int w = 1; w < kWarps; ++w) {
        const float4 p = parts4[w * kN * 32 + i];
        s4.x += p.x;
        s4.y += p.y;
        s4.z += p.z;
        s4.w += p.w;
      }
      float4& run4 = reinterpret_cast<float4*>(run)[i];
      float sum[4] = {s4.x, s4.y, s4.z, s4.w}, v[4] = {run4.x, run4.y, run4.z, run4.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int h = e >> 1, r = g + 8 * h, d = 32 * (n / 4) + 4 * (2 * c + (e & 1)) + n % 4;
        if (r >= rows || d >= hd) continue;
        if (spread) {
          float* st = state_of(lane_state[h], ch);
          st[2 + d] = sum[e];
          if (d == 0) {
            st[0] = chunk_max[r];
            st[1] = total[r];
          }
          continue;
        }
        // A row without keys in the chunk keeps its sums.
        if (total[r] > 0.0f) v[e] = fold(v[e], sum[e], fold_w[r]);
        if (last_chunk) {
          const float t = run_l[r];
          lane_out[h][d] = t > 0.0f ? v[e] / t : 0.0f;
        }
      }
      if (!spread && !last_chunk) run4 = make_float4(v[0], v[1], v[2], v[3]);
    }
  }

  if (!spread) {
    if (c_end == c_lo) {  // no keys at all
      for (int i = threadIdx.x; i < rows * hd; i += blockDim.x) {
        const int r = static_cast<int>(i / hd);
        out_row(r)[i - int64_t(r) * hd] = 0.0f;
      }
    }
    return;
  }
  // Split step: the last of the row group's blocks to finish combines the chunk states in order.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* count = sp.counters + blockIdx.y * gridDim.x + blockIdx.x;
    const unsigned arrived = atomicAdd(count, 1u) + 1u;
    const bool last = static_cast<int>(arrived) == min(sp.splits, c_end - c_lo);
    if (last) *count = 0u;  // for the next launch, which starts after this one has finished
    *last_block = last;
  }
  __syncthreads();
  if (!*last_block) return;
  __threadfence();
  for (int i = threadIdx.x; i < rows * hd; i += blockDim.x) {
    const int r = static_cast<int>(i / hd);
    const int64_t d = i - int64_t(r) * hd;
    float rm = -INFINITY, rl = 0.0f, rv = 0.0f;
    for (int ch = c_lo; ch < c_end; ++ch) {
      const float* st = state(r, ch);
      const float cl = __ldcg(st + 1);
      if (!(cl > 0.0f)) continue;
      const float cm = __ldcg(st);
      const FoldWeights w = fold_weights(rm, rl, cm);
      rv = fold(rv, __ldcg(st + 2 + d), w);
      rl = fold(rl, cl, w);
      rm = fold_max(rm, cm, w);
    }
    out_row(r)[d] = rl > 0.0f ? rv / rl : 0.0f;
  }
}

// Block (x, y, z): tokens [x T, x T + T) (T = tokens_per_block), a run of tokens of one sequence at a time,
// for the y-th run of up to 16 query heads of one kv head; z: the block's share of the chunks (split steps,
// which have T = 1).
template <int D>
__global__ void __launch_bounds__(kWarps * 32, 1)
    attention_kernel(AttnArgs a, AttnSplit sp, int tokens_per_block, CFMat q, CFMat kc, CFMat vc, FMat out) {
  extern __shared__ __align__(16) uint32_t sm[];
  allow_dependents();  // attend_rows waits for its inputs once it has read the step's index arrays
  const int64_t group = a.n_heads / a.n_kv_heads, runs = (group + kRows - 1) / kRows;
  const int64_t kvh = blockIdx.y / runs, h0 = kvh * group + (blockIdx.y % runs) * kRows;
  const int nh = static_cast<int>(min(int64_t{kRows}, (kvh + 1) * group - h0));
  const int64_t t_end = min(a.n_tokens, int64_t(blockIdx.x + 1) * tokens_per_block);
  for (int64_t t0 = int64_t(blockIdx.x) * tokens_per_block; t0 < t_end;) {
    const int32_t seq = a.seq_index[t0];
    int64_t t1 = t0 + 1;
    while (t1 < t_end && a.seq_index[t1] == seq) ++t1;
    attend_rows<D>(a, sp, t0, static_cast<int>(t1 - t0), h0, nh, kvh, seq, q, kc, vc, out, sm);
    t0 = t1;
  }
}

// Steps of up to 64 tokens (decode batches) take a block per token, for as many blocks as there are
// tokens; larger ones (prefill) fill the blocks' 16 rows with consecutive tokens.
int tokens_per_block(const AttnArgs& a) {
  const int64_t group = a.n_heads / a.n_kv_heads;
  return a.n_tokens <= 64 ? 1 : static_cast<int>(kRows / std::min<int64_t>(group, kRows));
}

template <int D>
cudaError_t launch_rows(cudaStream_t s, const AttnArgs& a, const AttnSplit& sp, CFMat q, CFMat kc, CFMat vc,
                        FMat out) {
  const int64_t group = a.n_heads / a.n_kv_heads, runs = (group + kRows - 1) / kRows;
  const int t = tokens_per_block(a);
  const dim3 grid(static_cast<unsigned>((a.n_tokens + t - 1) / t), static_cast<unsigned>(a.n_kv_heads * runs),
                  static_cast<unsigned>(sp.splits));
  return launch(attention_kernel<D>, grid, kWarps * 32, smem_words<D>() * sizeof(uint32_t), s, a, sp, t, q,
                kc, vc, out);
}

// f(std::integral_constant<int, D>) for the D (head dims in 32s, 1 to 8) that covers d32 32-dim chunks.
template <int D = 1, class F>
cudaError_t by_dims(int64_t d32, F&& f) {
  if constexpr (D < 8)
    if (d32 > D) return by_dims<D + 1>(d32, f);
  return f(std::integral_constant<int, D>{});
}

}  // namespace

bool attention_applies(int64_t head_dim, CFMat q, CFMat k_cache, CFMat v_cache) {
  return head_dim % 4 == 0 && head_dim <= kMaxHeadDim && q.ld % 4 == 0 && k_cache.ld % 4 == 0 &&
         v_cache.ld % 4 == 0 && aligned16(q.p) && aligned16(k_cache.p) && aligned16(v_cache.p);
}

size_t attention_scratch_bytes(const AttnArgs& a, const AttnSplit& sp) {
  if (sp.splits <= 1) return 0;
  return size_t(a.n_tokens * a.n_heads * sp.max_chunks * (a.head_dim + 2)) * sizeof(float);
}

AttnSplit attention_split(const AttnArgs& a, int sm_count) {
  AttnSplit sp;
  sp.max_chunks = (a.max_blocks * a.block_size + kAttnChunkKeys - 1) / kAttnChunkKeys;
  const int64_t runs = (a.n_heads / a.n_kv_heads + kRows - 1) / kRows;
  const int64_t groups = a.n_tokens * a.n_kv_heads * runs;  // blocks of a step taking all chunks
  if (tokens_per_block(a) != 1 || sp.max_chunks < 2 || groups >= sm_count || groups > kAttnCounters)
    return sp;
  // About one block per SM (a block takes an SM's shared memory at head dims above 128).
  AttnSplit wide = sp;
  wide.splits = static_cast<int>(std::min<int64_t>(sp.max_chunks, (sm_count + groups - 1) / groups));
  return attention_scratch_bytes(a, wide) <= kMaxScratchBytes ? wide : sp;
}

cudaError_t attention(cudaStream_t s, const AttnArgs& a, const AttnSplit& sp, CFMat q, CFMat k_cache,
                      CFMat v_cache, FMat out) {
  if (a.n_tokens == 0) return cudaSuccess;
  return by_dims((a.head_dim + 31) / 32,
                 [&](auto d) { return launch_rows<decltype(d)::value>(s, a, sp, q, k_cache, v_cache, out); });
}

cudaError_t init_attention() {
  for (int d32 = 1; d32 <= 8; ++d32) {
    const cudaError_t e = by_dims(d32, [](auto d) {
      return cudaFuncSetAttribute(attention_kernel<decltype(d)::value>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(smem_words<decltype(d)::value>() * sizeof(uint32_t)));
    });
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace ferrum::cuda
