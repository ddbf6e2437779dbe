// The op interface every backend implements. Ops are generic (no model names): a model is a
// sequence of these calls. Pointers passed to ops (tensors, index arrays) are device memory of
// the backend; the host fills index arrays through `copy_to_device`. Ops are queued in order on
// the backend's stream; `sync` waits for them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "backend/tensor.h"
#include "ferrum/model_config.h"
#include "ferrum/status.h"

namespace ferrum {

struct RopeParams {
  int64_t head_dim = 0;
  int64_t rope_dim = 0;  // leading dimensions of each head that rotate
  RopeStyle style = RopeStyle::Neox;
  const float* inv_freq = nullptr;  // rope_dim / 2 frequencies (device memory), scaling already applied
};

// Where each token of a step lives in the paged KV cache. Built by the runtime once per step.
// Token t attends to keys [kv_end[t] - window, kv_end[t]) of its sequence: kv_end = position + 1
// for causal decoders, the sequence length for bidirectional encoders.
struct AttentionLayout {
  int64_t n_tokens = 0;
  const int32_t* positions = nullptr;     // [n_tokens] position of the token in its sequence
  const int32_t* kv_end = nullptr;        // [n_tokens] one past the last key the token sees
  const int32_t* seq_index = nullptr;     // [n_tokens] row of block_tables for its sequence
  const int32_t* block_tables = nullptr;  // [n_seqs * max_blocks] KV block ids
  int64_t max_blocks = 0;
  int64_t block_size = 0;
};

struct AttentionParams {
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  float scale = 1.0f;
  int64_t window = 0;  // >0: only the last `window` keys (sliding-window layers)
};

// Same-shaped expert matrices [rows, cols] of one stored type (a mixture-of-experts projection).
// Matrix e starts at mats[e], a device array of device pointers, so a GGUF 3-D stack and the
// per-expert tensors of a Hugging Face folder are both used where they lie.
struct ExpertMatrices {
  DType type = DType::F32;
  int64_t n_experts = 0, rows = 0, cols = 0;
  size_t row_bytes = 0;
  const void* const* mats = nullptr;
  // Expert e as a 2-D view (host backends, where `mats` is host memory).
  Tensor matrix(int64_t e) const { return Tensor::matrix_view(type, const_cast<void*>(mats[e]), rows, cols); }
};

// Routing of n_tokens tokens to k experts each (device buffers, written by moe_route). Pair
// p = t * k + j is token t's j-th choice, by descending weight. The pairs are also listed grouped
// by expert: order[offsets[e] .. offsets[e + 1]) are expert e's pairs in increasing p, and
// rank[p] is the position of p in that list. Per-pair intermediate tensors of an MoE block have
// one row per pair in this grouped order, so each expert's rows are contiguous.
struct MoeRouting {
  int64_t n_tokens = 0, n_experts = 0, k = 0;
  int32_t* ids = nullptr;      // [n_tokens * k] expert of each pair
  float* weights = nullptr;    // [n_tokens * k] its mixing weight
  int32_t* offsets = nullptr;  // [n_experts + 1]
  int32_t* order = nullptr;    // [n_tokens * k]
  int32_t* rank = nullptr;     // [n_tokens * k]
};

// A recorded sequence of queued ops (a CUDA graph). Replaying it queues the same ops with the same
// arguments; the buffers they read may hold new contents.
class StepGraph {
 public:
  virtual ~StepGraph() = default;
};

// The attention inputs of one layer's step (Backend::rope_and_cache): q [n_tokens, n_heads * head_dim],
// k and v [n_tokens, n_kv_heads * head_dim], rows contiguous.
struct RopeAndCache {
  Tensor q, k, v;
  int64_t n_heads = 0, n_kv_heads = 0;
  Tensor q_norm, k_norm;  // [head_dim] per-head RMS norm weights (QK-norm), or both empty
  float eps = 0.0f;
  RopeParams rope;
  const int32_t* positions = nullptr;  // [n_tokens]
  Tensor k_cache, v_cache;
  const int32_t* slots = nullptr;  // [n_tokens] cache rows
};

// One product of Backend::matmul_group.
struct MatmulOut {
  const Tensor* w;
  Tensor out;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // What was chosen at load time (ISA, kernels), for `ferrum info`.
  virtual std::string describe() const = 0;

  // Memory. Buffers are owned by whoever allocated them and released with `free`.
  virtual Result<void*> alloc(size_t bytes) = 0;
  virtual void free(void* p) = 0;
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  // Makes a weight usable by ops: the CPU uses the mapping in place; a GPU uploads it.
  virtual Result<Tensor> upload_weight(const Tensor& host_view) = 0;
  // Whether ops read weights where upload_weight found them (host backends) rather than from a copy.
  virtual bool reads_host_weights() const { return true; }
  // Free and total bytes of the backend's own memory (GPUs); none for host backends.
  struct MemoryInfo {
    size_t free = 0, total = 0;
  };
  virtual std::optional<MemoryInfo> device_memory() const { return std::nullopt; }
  virtual void sync() = 0;
  // Waits for queued ops and returns the first failure since the last check (a device fault, an
  // out-of-memory scratch, a shape the backend cannot run), then clears it. Ops have no error
  // return because a device reports their failures only later; host backends never fail.
  virtual Status check() { return {}; }

  // Recording (backends where queuing an op costs more than running it, i.e. GPUs): ops queued
  // between record_begin and record_end are recorded, not run. They must not allocate, copy from
  // the host or synchronize; a step run once before with the same shapes has made its buffers.
  virtual bool can_record() const { return false; }
  virtual void record_begin() {}
  virtual Result<std::unique_ptr<StepGraph>> record_end() { return Error(name() + ": no step recording"); }
  virtual void replay(const StepGraph& graph) { (void)graph; }

  // out[i] = table[ids[i]] as float32; only the looked-up rows are dequantized.
  virtual void embed(const Tensor& table, const int32_t* ids, Tensor out) = 0;
  // out = x / rms(x) * w per row (w has x.cols elements). out may alias x. w is a weight, never an op's
  // output (a backend may read it before the ops queued ahead have finished).
  virtual void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor out) = 0;
  // x += y; out = rms_norm(x) (the residual stream and the next norm in one pass).
  virtual void add_rms_norm(Tensor x, const Tensor& y, const Tensor& w, float eps, Tensor out) = 0;
  // out = (x - mean) / sqrt(var + eps) * w + b per row.
  virtual void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor out) = 0;
  // x += y, elementwise over equal shapes.
  virtual void add(Tensor x, const Tensor& y) = 0;
  // x[r] += bias for every row r.
  virtual void add_bias(Tensor x, const Tensor& bias) = 0;
  // out[t, r] = sum_k x[t, k] * w[r, k] for a weight in its stored type.
  virtual void matmul(const Tensor& x, const Tensor& w, Tensor out) = 0;
  // matmul(x, w_i, out_i) for weights that read the same x (attention's q, k and v; an MLP's gate and
  // up), which a backend may run as one pass; every out_i equals its own matmul's bit for bit.
  virtual void matmul_group(const Tensor& x, std::span<const MatmulOut> outs) {
    for (const MatmulOut& m : outs) matmul(x, *m.w, m.out);
  }
  // Rotates the first rope_dim dims of every head of x ([n_tokens, n_heads * head_dim]) in place.
  virtual void rope(Tensor x, int64_t n_heads, const RopeParams& p, const int32_t* positions) = 0;
  // Stores k and v rows ([n_tokens, n_kv_heads * head_dim]) into the cache at the given slots.
  virtual void kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                        const int32_t* slots) = 0;
  // Makes a step's attention inputs ready: each head of q and k RMS-normed (when q_norm is set) and
  // rotated in place, then k and v stored into the caches, with the results of rms_norm, rope and
  // kv_write. Runs those ops; a backend may do it in one pass.
  virtual void rope_and_cache(const RopeAndCache& a);
  // Softmax attention of q ([n_tokens, n_heads * head_dim]) over each token's sequence in the
  // paged cache (GQA: query head h reads kv head h / (n_heads / n_kv_heads)); online softmax.
  virtual void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                         const AttentionLayout& layout, const AttentionParams& p, Tensor out) = 0;
  // out = silu(gate) * up.
  virtual void silu_mul(const Tensor& gate, const Tensor& up, Tensor out) = 0;
  // out = gelu(gate) * up with the tanh approximation (GeGLU).
  virtual void gelu_tanh_mul(const Tensor& gate, const Tensor& up, Tensor out) = 0;
  // x = gelu(x) with erf (BERT).
  virtual void gelu_erf(Tensor x) = 0;
  // x *= s.
  virtual void scale(Tensor x, float s) = 0;
  // x = cap * tanh(x / cap) (logit soft-capping).
  virtual void softcap(Tensor x, float cap) = 0;
  // out[i] = x[rows[i]] (gathers the rows that need logits).
  virtual void gather_rows(const Tensor& x, const int32_t* rows, Tensor out) = 0;
  // out[i] = the column of row i's largest value, the lowest column on ties, or -1 when that maximum is
  // not finite (a NaN or +inf in the row, or only -inf). Greedy decoding where the logits are: a GPU
  // returns ids instead of logits rows.
  virtual void argmax_rows(const Tensor& x, int32_t* out) = 0;

  // Mixture of experts. Results per (token, expert) pair never depend on which other tokens share
  // the step, so batched decoding is bit-identical to decoding alone.
  // Softmax over each row of router logits [n_tokens, n_experts]; the k most probable experts (ranked
  // by logit, ties to the lower id) with their probabilities, rescaled to sum to 1 when `normalize`.
  // Fills the arrays of r; the caller sets its sizes and k.
  virtual void moe_route(const Tensor& logits, bool normalize, const MoeRouting& r) = 0;
  // The gate and up projections of SwiGLU experts: out[i] = silu(G_e x_t) * (U_e x_t) for every
  // grouped pair i, with e = ids[order[i]] and t = order[i] / k (x has one row per token).
  virtual void expert_gate_up_silu(const Tensor& x, const ExpertMatrices& gate, const ExpertMatrices& up,
                                   const MoeRouting& r, Tensor out) = 0;
  // out[i] = W_e x[i] for every grouped pair i, e = ids[order[i]] (x has one row per grouped pair).
  virtual void expert_matmul(const Tensor& x, const ExpertMatrices& w, const MoeRouting& r, Tensor out) = 0;
  // out[t] = sum over j = 0..k-1, in that order, of weights[p] * y[rank[p]] with p = t * k + j.
  virtual void moe_combine(const Tensor& y, const MoeRouting& r, Tensor out) = 0;
};

// Backend::argmax_rows of one host row: what the host backends compute.
int32_t argmax_row(const float* v, int64_t n);

struct BackendOptions {
  int threads = 0;         // CPU backend threads; <= 0 means all cores
  bool exact_gemm = true;  // GPU: large-step products of quantized weights to float32 accuracy (see
                           // RuntimeConfig::exact_gemm); tests and tools comparing kernels want this
};

// Creates a backend by name: "cpu", "reference", "cuda" or "cuda:N" (device N), "auto" (cuda when
// built with it and a device exists, else cpu).
Result<std::unique_ptr<Backend>> create_backend(const std::string& name, const BackendOptions& options);
inline Result<std::unique_ptr<Backend>> create_backend(const std::string& name, int threads) {
  return create_backend(name, BackendOptions{.threads = threads});
}

}  // namespace ferrum
