// Launchers of the CUDA backend's kernels (compiled by nvcc in the .cu files, called from the
// host-only cuda_backend.cpp). All pointers are device memory; every launcher queues its work on
// `s` and returns the launch error (cudaSuccess when queued).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace ferrum::cuda {

// A float32 matrix: `rows` rows of `cols` floats, `ld` floats apart.
struct FMat {
  float* p;
  int64_t rows, cols, ld;
};
struct CFMat {
  const float* p;
  int64_t rows, cols, ld;
};

// A weight matrix in its stored type: `rows` rows of `cols` elements, `row_bytes` apart.
struct WMat {
  DType type;
  const uint8_t* p;
  int64_t rows, cols;
  size_t row_bytes;
};

// Steps of up to this many tokens run the matmul as a weight-streaming GEMV whose per-(row, token)
// arithmetic does not depend on the token count.
constexpr int64_t kGemvMaxTokens = 8;
// Q4_K, Q6_K and Q8_0 steps of kGemvMaxTokens + 1 up to this many tokens run on the batched tensor-core
// kernels (batch_kquant.cu), batch invariant among such steps, or, for Q4_K and Q8_0 with 8-bit
// activations, on the GEMVs of gemv_int8.cu; larger steps (and other types above kGemvMaxTokens) use
// cuBLAS.
constexpr int64_t kKquantMaxTokens = 64;

bool weight_type_supported(DType t);

// y[t, r] = sum_k x[t, k] * w[r, k] for x.rows <= kGemvMaxTokens, float32-accurate.
cudaError_t gemv(cudaStream_t s, const WMat& w, CFMat x, FMat y);
// The GEMVs for Q4_K, Q6_K, Q8_0, F16 and BF16 rows (gemv_kquant.cu), where the weight and activation
// layout allows them. A group of up to kMaxGemvGroup products of one x (every w applicable) runs one
// launch per weight type; each y[i] equals that of w[i] alone, bit for bit. With int8.on, products
// that int8_gemv_applies to run against activations rounded to 8 bits (gemv_int8.cu), for steps of up
// to kKquantMaxTokens tokens (the only products these functions take above kGemvMaxTokens): a token's
// result is then the same in every step of 1 .. kKquantMaxTokens tokens. They need
// int8_gemv_scratch_bytes(x) of device memory at int8.scratch for the rounded activations.
bool kquant_gemv_applies(const WMat& w, CFMat x);
bool int8_gemv_applies(const WMat& w, CFMat x);
size_t int8_gemv_scratch_bytes(CFMat x);
cudaError_t kquant_gemv(cudaStream_t s, const WMat& w, CFMat x, FMat y);  // float32-accurate
constexpr int kMaxGemvGroup = 3;
// kquant_gemv_group's 8-bit-activation path: off, or on with its scratch and the device's SM count (which
// decides a launch's shape, never its bits).
struct GemvInt8 {
  bool on = false;
  void* scratch = nullptr;
  int sm_count = 0;
};
cudaError_t kquant_gemv_group(cudaStream_t s, CFMat x, const WMat* w, const FMat* y, int n, GemvInt8 int8);
// The batched-step kernels (batch_kquant.cu) for up to kMaxGemvGroup products of one x, every w
// applicable: one launch per weight type; each y[i] is what the group of w[i] alone gives.
bool kquant_batch_applies(const WMat& w, CFMat x);
cudaError_t kquant_batch_group(cudaStream_t s, CFMat x, const WMat* w, const FMat* y, int n);
// Rows [r0, r0 + n) of w decoded and split as w ~= hi + lo, both IEEE half, dense [n, w.cols]; with lo
// null, w ~= hi (rounded to half).
cudaError_t dequant_rows_f16(cudaStream_t s, const WMat& w, int64_t r0, int64_t n, void* hi, void* lo);
// x ~= hi + lo, both dense [x.rows, x.cols] in half (bf16 = false) or bfloat16 (bf16 = true): the
// two-term split carries about 22 (half) or 16 (bfloat16) mantissa bits through a 16-bit GEMM. With lo
// null, x ~= hi.
cudaError_t split_activations(cudaStream_t s, CFMat x, bool bf16, void* hi, void* lo);
// out[i] = table[ids[i]] as float32.
cudaError_t embed(cudaStream_t s, const WMat& table, const int32_t* ids, FMat out);

// out = rms_norm(x (+= y when y.p)) * w per row (rows of at most 16384 columns); out may alias x.
cudaError_t rms_norm(cudaStream_t s, FMat x, CFMat y, const float* w, float eps, FMat out);
cudaError_t layer_norm(cudaStream_t s, CFMat x, const float* w, const float* b, float eps, FMat out);
cudaError_t add(cudaStream_t s, FMat x, CFMat y);
cudaError_t add_bias(cudaStream_t s, FMat x, const float* bias);
enum class Glu { Silu, GeluTanh };
cudaError_t glu(cudaStream_t s, Glu kind, CFMat gate, CFMat up, FMat out);
cudaError_t gelu_erf(cudaStream_t s, FMat x);
cudaError_t scale(cudaStream_t s, FMat x, float v);
cudaError_t softcap(cudaStream_t s, FMat x, float cap);
cudaError_t gather_rows(cudaStream_t s, CFMat x, const int32_t* rows, FMat out);
cudaError_t argmax_rows(cudaStream_t s, CFMat x, int32_t* out);
// Rotates the first rope_dim dims of each of n_heads heads (head_dim apart) of every row of x.
cudaError_t rope(cudaStream_t s, FMat x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, bool neox,
                 const float* inv_freq, const int32_t* positions);
cudaError_t kv_write(cudaStream_t s, FMat k_cache, FMat v_cache, CFMat k, CFMat v, const int32_t* slots);
// Backend::rope_and_cache in one launch: per token, each head of q and k RMS-normed (with q_norm / k_norm
// when not null) and rotated in place, the rotated k and v rows stored at the token's cache slot.
struct RopeCacheArgs {
  FMat q, k;
  CFMat v;
  int64_t n_heads, n_kv_heads, head_dim, rope_dim;
  bool neox;
  const float* inv_freq;
  const int32_t* positions;
  const float *q_norm, *k_norm;
  float eps;
  FMat k_cache, v_cache;
  const int32_t* slots;
};
cudaError_t rope_and_cache(cudaStream_t s, const RopeCacheArgs& a);

struct AttnArgs {
  int64_t n_tokens;
  const int32_t* kv_end;
  const int32_t* seq_index;
  const int32_t* block_tables;
  int64_t max_blocks, block_size;
  int64_t n_heads, n_kv_heads, head_dim;
  float scale;
  int64_t window;
};
constexpr int64_t kMaxHeadDim = 256;
// The kernel loads 4 floats at a time: heads of a multiple of 4 dims up to kMaxHeadDim, rows of a multiple
// of 4 floats, 16-byte aligned.
bool attention_applies(int64_t head_dim, CFMat q, CFMat k_cache, CFMat v_cache);
// A row's keys are taken in chunks of kAttnChunkKeys, counted from its sequence's key 0, and the chunks'
// softmax states are combined in order. In a step that would leave most SMs idle (decoding few
// sequences), a row's chunks are spread over `splits` blocks, which leave their states in `scratch`
// for the last of them to combine: the same arithmetic as one block taking every chunk, so the same
// bits (a token's result never depends on the step it is in).
constexpr int64_t kAttnChunkKeys = 512;
constexpr int kAttnCounters = 1024;  // row groups a split step may have
struct AttnSplit {
  int splits = 1;                // blocks a row group's chunks are spread over
  int64_t max_chunks = 0;        // chunks of the longest sequence the block tables can hold
  float* scratch = nullptr;      // attention_scratch_bytes of device memory
  unsigned* counters = nullptr;  // kAttnCounters, zero between launches (the kernel leaves them so)
};
// The split for a step on a device of sm_count SMs (scratch and counters left for the caller to set).
AttnSplit attention_split(const AttnArgs& a, int sm_count);
size_t attention_scratch_bytes(const AttnArgs& a, const AttnSplit& sp);
cudaError_t attention(cudaStream_t s, const AttnArgs& a, const AttnSplit& sp, CFMat q, CFMat k_cache,
                      CFMat v_cache, FMat out);
// Mixture of experts (see MoeRouting in backend.h). Expert e's matrix starts at mats[e], a device
// array of device pointers.
struct EMat {
  DType type;
  const void* const* mats;
  int64_t rows, cols;
  size_t row_bytes;
};
struct Routing {
  int64_t n_tokens, n_experts, k;
  int32_t* ids;
  float* weights;
  int32_t *offsets, *order, *rank;
};
constexpr int64_t kMaxExperts = 1024;
cudaError_t moe_route(cudaStream_t s, CFMat logits, bool normalize, const Routing& r);
// out[i] = W_e x[xrow(i)] for every grouped pair i, e = ids[order[i]], xrow(i) = order[i] / k when
// `per_token`, else i. With `up` (same type as w): out[i] = silu(W_e x) * (U_e x). Each pair's result
// is computed with the same arithmetic whatever else its expert received.
cudaError_t expert_gemv(cudaStream_t s, const EMat& w, const EMat* up, CFMat x, bool per_token,
                        const Routing& r, FMat out);
cudaError_t moe_combine(cudaStream_t s, CFMat y, const Routing& r, FMat out);
// expert_gemv against activations rounded to 8 bits per 256 columns as int8_gemv_applies' GEMVs round
// them (gemv_int8.cu), for Q4_K and Q6_K experts and steps of any size; `up` of w's type. Each pair's
// result is computed with the same arithmetic whatever the step. Needs expert_int8_scratch_bytes of
// device memory at `scratch`.
bool expert_int8_applies(const EMat& w, CFMat x);
size_t expert_int8_scratch_bytes(CFMat x, const Routing& r);
cudaError_t expert_int8_gemv(cudaStream_t s, const EMat& w, const EMat* up, CFMat x, bool per_token,
                             const Routing& r, FMat out, void* scratch);

// One-time kernel attributes (shared-memory limits) of attention.cu, gemv_kquant.cu and batch_kquant.cu;
// call once per device.
cudaError_t init_attention();
cudaError_t init_kquant_gemv();
cudaError_t init_kquant_batch();

}  // namespace ferrum::cuda
