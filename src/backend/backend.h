// The op interface every backend implements. Ops are generic (no model names): a model is a
// sequence of these calls. Pointers passed to ops (tensors, index arrays) are device memory of
// the backend; the host fills index arrays through `copy_to_device`. Ops are queued in order on
// the backend's stream; `sync` waits for them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "backend/tensor.h"
#include "ferrum/model_config.h"
#include "ferrum/status.h"

namespace ferrum {

struct RopeParams {
  int64_t head_dim = 0;
  int64_t rope_dim = 0;            // leading dimensions of each head that rotate
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
  int64_t window = 0;        // >0: only the last `window` keys (sliding-window layers)
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
  virtual void sync() = 0;

  // out[i] = table[ids[i]] as float32; only the looked-up rows are dequantized.
  virtual void embed(const Tensor& table, const int32_t* ids, Tensor out) = 0;
  // out = x / rms(x) * w per row (w has x.cols elements). out may alias x.
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
  // Rotates the first rope_dim dims of every head of x ([n_tokens, n_heads * head_dim]) in place.
  virtual void rope(Tensor x, int64_t n_heads, const RopeParams& p, const int32_t* positions) = 0;
  // Stores k and v rows ([n_tokens, n_kv_heads * head_dim]) into the cache at the given slots.
  virtual void kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v, const int32_t* slots) = 0;
  // Softmax attention of q ([n_tokens, n_heads * head_dim]) over each token's sequence in the
  // paged cache (GQA: query head h reads kv head h / (n_heads / n_kv_heads)); online softmax.
  virtual void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const AttentionLayout& layout,
                         const AttentionParams& p, Tensor out) = 0;
  // out = silu(gate) * up.
  virtual void silu_mul(const Tensor& gate, const Tensor& up, Tensor out) = 0;
  // out = gelu(gate) * up with the tanh approximation (GeGLU).
  virtual void gelu_tanh_mul(const Tensor& gate, const Tensor& up, Tensor out) = 0;
  // x = gelu(x) with erf (BERT).
  virtual void gelu_erf(Tensor x) = 0;
  // x *= s.
  virtual void scale(Tensor x, float s) = 0;
  // out[i] = x[rows[i]] (gathers the rows that need logits).
  virtual void gather_rows(const Tensor& x, const int32_t* rows, Tensor out) = 0;
};

// Creates a backend by name ("cpu", "reference"); threads <= 0 means all cores.
Result<std::unique_ptr<Backend>> create_backend(const std::string& name, int threads);

}  // namespace ferrum
