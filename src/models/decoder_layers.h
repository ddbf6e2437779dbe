// Building blocks shared by the decoder architectures: the GQA self-attention block (optional
// q/k/v/o biases, per-head QK-norm, RoPE, paged KV) and the gated MLP. Architectures compose them.
#pragma once

#include <vector>

#include "models/model.h"

namespace ferrum {

struct AttentionWeights {
  Tensor wq, wk, wv, wo;
  Tensor bq, bk, bv, bo;      // empty when absent
  Tensor q_norm, k_norm;      // empty without QK-norm
};

struct MlpWeights {
  Tensor gate, up, down;
};

// Loads blk.N.attn_{q,k,v,output}.{weight,bias} and attn_{q,k}_norm for layer `il`.
Result<AttentionWeights> load_attention(WeightStore& w, const ModelConfig& c, int64_t il);
Result<MlpWeights> load_mlp(WeightStore& w, int64_t il, int64_t hidden, int64_t intermediate,
                            const std::string& suffix = "");

// The output head: `output.weight`, else the token embedding when tied (GGUF files omit the
// head when tied; HF folders must say tie_word_embeddings).
Result<Tensor> load_output_head(WeightStore& w, const ModelConfig& c, const Tensor& tok_embd);

// Rotary frequencies for the config (llama3 / linear scaling applied; GGUF `rope_freqs.weight`
// factors divide them when the file has that tensor), uploaded to the backend.
Result<Tensor> load_rope_frequencies(WeightStore& w, Backend& backend, const ModelConfig& c, double theta);
// GGUF files of the llama architecture store Q/K rows permuted for adjacent-pair RoPE
// (llama.cpp's converter does this); every other source keeps the rotate-half layout.
RopeStyle rope_style_for(const WeightStore& w, const ModelConfig& c);

struct AttentionScratch {
  Tensor q, k, v, out;
};
AttentionScratch attention_scratch(ScratchArena& s, const ModelConfig& c, int64_t n_tokens);
size_t attention_scratch_floats(const ModelConfig& c, int64_t n_tokens);

// out_proj = Attention(h) @ wo (+ bo); writes K/V of the step's tokens into layer `il` of the cache.
void attention_forward(Backend& b, const ModelConfig& c, const AttentionWeights& w, const RopeParams& rope,
                       const AttentionParams& ap, const Step& step, KvCache& kv, int64_t il, const Tensor& h,
                       AttentionScratch& s, Tensor out_proj);

}  // namespace ferrum
