// The mixture-of-experts feed-forward block: a linear router picks k of n experts for each token,
// each expert a SwiGLU MLP, and the block's output is their weighted sum. Architectures with this
// block (Qwen3-MoE) compose it with the decoder layers of decoder_layers.h.
#pragma once

#include "models/model.h"

namespace ferrum {

struct MoeWeights {
  Tensor router;  // [n_experts, hidden]
  ExpertMatrices gate, up, down;
};

// Loads the router blk.N.ffn_gate_inp.weight and the experts of layer `il`: GGUF's 3-D stacks
// blk.N.ffn_{gate,up,down}_exps.weight, or from a Hugging Face folder one matrix per expert,
// blk.N.ffn_{gate,up,down}_exps.E.weight in the architecture's name map. Neither is copied.
Result<MoeWeights> load_moe(WeightStore& w, const ModelConfig& c, int64_t il);

struct MoeScratch {
  Tensor logits;  // [n_tokens, n_experts]
  MoeRouting routing;
  Tensor act, out;  // per grouped pair: [n_pairs, moe_intermediate], [n_pairs, hidden]
};
MoeScratch moe_scratch(ScratchArena& s, const ModelConfig& c, int64_t n_tokens);
size_t moe_scratch_floats(const ModelConfig& c, int64_t n_tokens);

// out = the MoE block applied to h (both [n_tokens, hidden]); `normalize` rescales each token's
// chosen expert weights to sum to 1 (norm_topk_prob).
void moe_forward(Backend& b, Profiler& profiler, const MoeWeights& w, bool normalize, const Tensor& h,
                 MoeScratch& s, Tensor out);

}  // namespace ferrum
