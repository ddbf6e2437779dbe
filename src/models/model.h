// What every architecture implements: one forward over a ragged batch of sequences.
// prefill (one sequence, many tokens), decode (one token) and batched decode (many sequences,
// one token each) are all the same call with a different Step.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/profiler.h"
#include "ferrum/model_config.h"
#include "kv/kv_cache.h"
#include "models/weights.h"

namespace ferrum {

// One forward step, in device memory (filled by the runtime).
struct Step {
  int64_t n_tokens = 0;
  const int32_t* tokens = nullptr;     // [n_tokens]
  const int32_t* slots = nullptr;      // [n_tokens] KV row of each token
  AttentionLayout layout;              // positions, sequences, block tables
  // The same for layers the KV cache keeps in per-sequence rings (KvCache::windowed); equal to
  // slots / layout when it keeps none.
  const int32_t* window_slots = nullptr;
  AttentionLayout window_layout;
  int64_t n_out = 0;                   // rows that need logits
  const int32_t* out_rows = nullptr;   // [n_out] token indices
};

// Bump allocator over one backend allocation made at load; reset before each step.
class ScratchArena {
 public:
  ScratchArena(float* base, size_t floats) : base_(base), cap_(floats) {}
  Tensor f32(int64_t rows, int64_t cols) {
    const size_t n = (static_cast<size_t>(rows * cols) + 15) / 16 * 16;  // keep rows 64-byte aligned
    float* p = base_ + used_;
    used_ += n;
    return Tensor::f32(p, rows, cols);
  }
  void reset() { used_ = 0; }
  bool overflowed() const { return used_ > cap_; }

 private:
  float* base_;
  size_t cap_;
  size_t used_ = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  const ModelConfig& config() const { return cfg_; }
  // Decoders attend to earlier positions only; encoders to the whole sequence of the step.
  virtual bool causal() const { return true; }
  // Width of one token's K (and V) row per layer, in floats.
  virtual int64_t kv_dim() const = 0;
  // Floats of scratch needed for a step of up to max_tokens tokens and max_out logit rows.
  virtual size_t scratch_floats(int64_t max_tokens, int64_t max_out) const = 0;
  // Width of one output row: vocabulary logits for decoders, the final hidden state for encoders.
  virtual int64_t output_width() const { return cfg_.vocab_size; }
  // Writes output rows [step.n_out, output_width()] into `logits`.
  virtual Status forward(const Step& step, KvCache& kv, ScratchArena& scratch, Tensor logits) = 0;

 protected:
  Model(ModelConfig cfg, Backend& backend, Profiler& profiler)
      : cfg_(std::move(cfg)), backend_(backend), profiler_(profiler) {}
  ModelConfig cfg_;
  Backend& backend_;
  Profiler& profiler_;
};

using ModelBuilder = Result<std::unique_ptr<Model>> (*)(WeightStore& weights, Backend& backend, Profiler& profiler);

struct Architecture {
  ModelBuilder build;
  const NameMap& (*hf_names)();  // Hugging Face <-> internal tensor names
};

// The architecture registered under a name (ModelConfig::arch), or an error listing the known ones.
Result<const Architecture*> find_architecture(const std::string& arch);

// One builder and name map per architecture file.
Result<std::unique_ptr<Model>> build_llama_family(WeightStore& weights, Backend& backend, Profiler& profiler);
const NameMap& llama_family_names();
Result<std::unique_ptr<Model>> build_qwen3_moe(WeightStore& weights, Backend& backend, Profiler& profiler);
const NameMap& qwen3_moe_names();
Result<std::unique_ptr<Model>> build_bert(WeightStore& weights, Backend& backend, Profiler& profiler);
const NameMap& bert_names();
Result<std::unique_ptr<Model>> build_gemma3(WeightStore& weights, Backend& backend, Profiler& profiler);
const NameMap& gemma3_names();

}  // namespace ferrum
