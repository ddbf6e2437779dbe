// Qwen3-MoE: Qwen3's decoder (GQA attention with per-head QK-norm, RoPE) whose feed-forward is a
// mixture of SwiGLU experts (moe_layers.h) in the layers Hugging Face's rule picks: every
// decoder_sparse_step-th layer not listed in mlp_only_layers. The other layers keep a dense MLP.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "models/decoder_layers.h"
#include "models/moe_layers.h"

namespace ferrum {

const NameMap& qwen3_moe_names() {
  static const NameMap kNames({
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
      {"blk.{}.attn_norm.weight", "model.layers.{}.input_layernorm.weight"},
      {"blk.{}.ffn_norm.weight", "model.layers.{}.post_attention_layernorm.weight"},
      {"blk.{}.attn_q.weight", "model.layers.{}.self_attn.q_proj.weight"},
      {"blk.{}.attn_k.weight", "model.layers.{}.self_attn.k_proj.weight"},
      {"blk.{}.attn_v.weight", "model.layers.{}.self_attn.v_proj.weight"},
      {"blk.{}.attn_output.weight", "model.layers.{}.self_attn.o_proj.weight"},
      {"blk.{}.attn_q_norm.weight", "model.layers.{}.self_attn.q_norm.weight"},
      {"blk.{}.attn_k_norm.weight", "model.layers.{}.self_attn.k_norm.weight"},
      {"blk.{}.ffn_gate_inp.weight", "model.layers.{}.mlp.gate.weight"},
      {"blk.{}.ffn_gate_exps.{e}.weight", "model.layers.{}.mlp.experts.{e}.gate_proj.weight"},
      {"blk.{}.ffn_up_exps.{e}.weight", "model.layers.{}.mlp.experts.{e}.up_proj.weight"},
      {"blk.{}.ffn_down_exps.{e}.weight", "model.layers.{}.mlp.experts.{e}.down_proj.weight"},
      {"blk.{}.ffn_gate.weight", "model.layers.{}.mlp.gate_proj.weight"},
      {"blk.{}.ffn_up.weight", "model.layers.{}.mlp.up_proj.weight"},
      {"blk.{}.ffn_down.weight", "model.layers.{}.mlp.down_proj.weight"},
  });
  return kNames;
}

namespace {

class Qwen3Moe : public Model {
 public:
  Qwen3Moe(const ModelConfig& c, Backend& b, Profiler& p) : Model(c, b, p) {}

  Status load(WeightStore& w) {
    const ModelConfig& c = cfg_;
    if (c.decoder_sparse_step <= 0)
      return Error(fmt::format("{}: field 'decoder_sparse_step' = {} must be positive", w.path(),
                               c.decoder_sparse_step));
    FERRUM_ASSIGN_OR_RETURN(tok_embd_, w.matrix("token_embd.weight", c.vocab_size, c.hidden));
    FERRUM_ASSIGN_OR_RETURN(out_norm_, w.vector("output_norm.weight", c.hidden));
    FERRUM_ASSIGN_OR_RETURN(output_, load_output_head(w, c, tok_embd_));
    layers_.resize(static_cast<size_t>(c.n_layers));
    for (int64_t il = 0; il < c.n_layers; ++il) {
      Layer& L = layers_[static_cast<size_t>(il)];
      FERRUM_ASSIGN_OR_RETURN(L.attn_norm, w.vector(fmt::format("blk.{}.attn_norm.weight", il), c.hidden));
      FERRUM_ASSIGN_OR_RETURN(L.ffn_norm, w.vector(fmt::format("blk.{}.ffn_norm.weight", il), c.hidden));
      FERRUM_ASSIGN_OR_RETURN(L.attn, load_attention(w, c, il));
      // GGUF has no keys for the sparse step or the dense layers: the router tensor marks MoE layers.
      L.is_moe = w.is_gguf() ? w.has(fmt::format("blk.{}.ffn_gate_inp.weight", il))
                             : c.n_experts > 0 && (il + 1) % c.decoder_sparse_step == 0 &&
                                   std::find(c.mlp_only_layers.begin(), c.mlp_only_layers.end(), il) ==
                                       c.mlp_only_layers.end();
      if (L.is_moe) {
        FERRUM_ASSIGN_OR_RETURN(L.moe, load_moe(w, c, il));
      } else {
        FERRUM_ASSIGN_OR_RETURN(L.mlp, load_mlp(w, il, c.hidden, c.intermediate));
        has_dense_ = true;
      }
    }
    FERRUM_ASSIGN_OR_RETURN(Tensor freqs, load_rope_frequencies(w, backend_, c, c.rope_theta));
    rope_ = {c.head_dim, c.rope_dim, rope_style_for(w, c), freqs.row<float>(0)};
    attn_ = {c.n_heads, c.n_kv_heads, c.head_dim, static_cast<float>(1.0 / std::sqrt(double(c.head_dim))), 0};
    return {};
  }

  int64_t kv_dim() const override { return cfg_.n_kv_heads * cfg_.head_dim; }

  size_t scratch_floats(int64_t n, int64_t n_out) const override {
    const size_t H = static_cast<size_t>(cfg_.hidden),
                 I = has_dense_ ? static_cast<size_t>(cfg_.intermediate) : 0;
    return static_cast<size_t>(n) * (3 * H + 2 * I) + attention_scratch_floats(cfg_, n) +
           moe_scratch_floats(cfg_, n) + static_cast<size_t>(n_out) * H + 256;
  }

  Status forward(const Step& step, KvCache& kv, ScratchArena& s, Tensor logits) override {
    Backend& b = backend_;
    const ModelConfig& c = cfg_;
    const int64_t n = step.n_tokens;
    const float eps = static_cast<float>(c.norm_eps);
    Tensor x = s.f32(n, c.hidden), h = s.f32(n, c.hidden), tmp = s.f32(n, c.hidden);
    Tensor gate, up;
    if (has_dense_) {
      gate = s.f32(n, c.intermediate);
      up = s.f32(n, c.intermediate);
    }
    AttentionScratch as = attention_scratch(s, c, n);
    MoeScratch ms = moe_scratch(s, c, n);
    Tensor xo = s.f32(step.n_out, c.hidden);
    {
      Profiler::Scope ps(profiler_, Stage::Embed);
      b.embed(tok_embd_, step.tokens, x);
      b.rms_norm(x, layers_[0].attn_norm, eps, h);
    }
    for (int64_t il = 0; il < c.n_layers; ++il) {
      const Layer& L = layers_[static_cast<size_t>(il)];
      {
        Profiler::Scope ps(profiler_, Stage::Attention);
        attention_forward(b, c, L.attn, rope_, attn_, step, kv, il, h, as, tmp);
        b.add_rms_norm(x, tmp, L.ffn_norm, eps, h);
      }
      if (L.is_moe) {
        moe_forward(b, profiler_, L.moe, c.norm_topk_prob, h, ms, tmp);
      } else {
        Profiler::Scope ps(profiler_, Stage::FFN);
        const MatmulOut gate_up[] = {{&L.mlp.gate, gate}, {&L.mlp.up, up}};
        b.matmul_group(h, gate_up);
        b.silu_mul(gate, up, gate);
        b.matmul(gate, L.mlp.down, tmp);
      }
      // The residual add is fused with the next layer's input norm.
      Profiler::Scope ps(profiler_, L.is_moe ? Stage::MoeCombine : Stage::FFN);
      if (il + 1 < c.n_layers)
        b.add_rms_norm(x, tmp, layers_[static_cast<size_t>(il + 1)].attn_norm, eps, h);
      else
        b.add(x, tmp);
    }
    Profiler::Scope ps(profiler_, Stage::LmHead);
    b.gather_rows(x, step.out_rows, xo);
    b.rms_norm(xo, out_norm_, eps, xo);
    b.matmul(xo, output_, logits);
    return {};
  }

 private:
  struct Layer {
    Tensor attn_norm, ffn_norm;
    AttentionWeights attn;
    bool is_moe = false;
    MlpWeights mlp;
    MoeWeights moe;
  };
  Tensor tok_embd_, out_norm_, output_;
  std::vector<Layer> layers_;
  bool has_dense_ = false;
  RopeParams rope_;
  AttentionParams attn_;
};

}  // namespace

Result<std::unique_ptr<Model>> build_qwen3_moe(WeightStore& weights, Backend& backend, Profiler& profiler) {
  weights.bind(&backend, &qwen3_moe_names());
  auto m = std::make_unique<Qwen3Moe>(weights.config(), backend, profiler);
  FERRUM_TRY(m->load(weights));
  return std::unique_ptr<Model>(std::move(m));
}

}  // namespace ferrum
