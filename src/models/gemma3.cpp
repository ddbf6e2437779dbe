// Gemma 3 text decoders (HF gemma3_text / GGUF gemma3): embeddings scaled by sqrt(hidden),
// RMSNorm computing x * (1 + w), sandwich norms around attention and MLP, QK-norm, attention scale
// query_pre_attn_scalar^-0.5, GeGLU (tanh GELU), sliding-window layers with their own RoPE base,
// tied embeddings, optional final logit soft-capping.
#include <fmt/format.h>

#include <cmath>

#include "models/decoder_layers.h"

namespace ferrum {

const NameMap& gemma3_names() {
  static const NameMap kNames({
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"blk.{}.attn_norm.weight", "model.layers.{}.input_layernorm.weight"},
      {"blk.{}.post_attention_norm.weight", "model.layers.{}.post_attention_layernorm.weight"},
      {"blk.{}.ffn_norm.weight", "model.layers.{}.pre_feedforward_layernorm.weight"},
      {"blk.{}.post_ffw_norm.weight", "model.layers.{}.post_feedforward_layernorm.weight"},
      {"blk.{}.attn_q.weight", "model.layers.{}.self_attn.q_proj.weight"},
      {"blk.{}.attn_k.weight", "model.layers.{}.self_attn.k_proj.weight"},
      {"blk.{}.attn_v.weight", "model.layers.{}.self_attn.v_proj.weight"},
      {"blk.{}.attn_output.weight", "model.layers.{}.self_attn.o_proj.weight"},
      {"blk.{}.attn_q_norm.weight", "model.layers.{}.self_attn.q_norm.weight"},
      {"blk.{}.attn_k_norm.weight", "model.layers.{}.self_attn.k_norm.weight"},
      {"blk.{}.ffn_gate.weight", "model.layers.{}.mlp.gate_proj.weight"},
      {"blk.{}.ffn_up.weight", "model.layers.{}.mlp.up_proj.weight"},
      {"blk.{}.ffn_down.weight", "model.layers.{}.mlp.down_proj.weight"},
  });
  return kNames;
}

namespace {

class Gemma3 : public Model {
 public:
  Gemma3(const ModelConfig& c, Backend& b, Profiler& p) : Model(c, b, p) {}

  Status load(WeightStore& w) {
    const ModelConfig& c = cfg_;
    if (c.sliding_layers.size() != static_cast<size_t>(c.n_layers) || c.sliding_window <= 0)
      return Error(w.path() + ": Gemma 3 needs layer_types and a positive sliding_window");
    // HF stores norm weights w for x * (1 + w); llama.cpp's converter stores 1 + w in GGUF files.
    hf_ = !w.is_gguf();
    FERRUM_ASSIGN_OR_RETURN(tok_embd_, w.matrix("token_embd.weight", c.vocab_size, c.hidden));
    FERRUM_ASSIGN_OR_RETURN(out_norm_, norm(w, "output_norm.weight", c.hidden));
    output_ = tok_embd_;
    if (w.has("output.weight")) {
      FERRUM_ASSIGN_OR_RETURN(output_, w.matrix("output.weight", c.vocab_size, c.hidden));
    }
    layers_.resize(static_cast<size_t>(c.n_layers));
    for (int64_t il = 0; il < c.n_layers; ++il) {
      Layer& L = layers_[static_cast<size_t>(il)];
      FERRUM_ASSIGN_OR_RETURN(L.attn_norm, norm(w, fmt::format("blk.{}.attn_norm.weight", il), c.hidden));
      FERRUM_ASSIGN_OR_RETURN(L.post_attn_norm,
                              norm(w, fmt::format("blk.{}.post_attention_norm.weight", il), c.hidden));
      FERRUM_ASSIGN_OR_RETURN(L.ffn_norm, norm(w, fmt::format("blk.{}.ffn_norm.weight", il), c.hidden));
      FERRUM_ASSIGN_OR_RETURN(L.post_ffn_norm,
                              norm(w, fmt::format("blk.{}.post_ffw_norm.weight", il), c.hidden));
      FERRUM_ASSIGN_OR_RETURN(L.attn, load_attention(w, c, il));
      FERRUM_ASSIGN_OR_RETURN(L.attn.q_norm,
                              norm(w, fmt::format("blk.{}.attn_q_norm.weight", il), c.head_dim));
      FERRUM_ASSIGN_OR_RETURN(L.attn.k_norm,
                              norm(w, fmt::format("blk.{}.attn_k_norm.weight", il), c.head_dim));
      FERRUM_ASSIGN_OR_RETURN(L.mlp, load_mlp(w, il, c.hidden, c.intermediate));
      L.sliding = c.sliding_layers[static_cast<size_t>(il)];
    }
    FERRUM_ASSIGN_OR_RETURN(Tensor global, load_rope_frequencies(w, backend_, c, c.rope_theta));
    ModelConfig local_cfg = c;
    local_cfg.rope_scaling = RopeScaling{};  // scaling applies to global layers only
    FERRUM_ASSIGN_OR_RETURN(
        Tensor local, load_rope_frequencies(w, backend_, local_cfg,
                                            c.rope_theta_local > 0 ? c.rope_theta_local : c.rope_theta));
    const RopeStyle style = rope_style_for(w, c);
    rope_global_ = {c.head_dim, c.rope_dim, style, global.row<float>(0)};
    rope_local_ = {c.head_dim, c.rope_dim, style, local.row<float>(0)};
    const float scale =
        static_cast<float>(c.attn_scale > 0 ? c.attn_scale : 1.0 / std::sqrt(double(c.head_dim)));
    attn_global_ = {c.n_heads, c.n_kv_heads, c.head_dim, scale, 0};
    attn_local_ = {c.n_heads, c.n_kv_heads, c.head_dim, scale, c.sliding_window};
    return {};
  }

  int64_t kv_dim() const override { return cfg_.n_kv_heads * cfg_.head_dim; }

  size_t scratch_floats(int64_t n, int64_t n_out) const override {
    const size_t H = static_cast<size_t>(cfg_.hidden), I = static_cast<size_t>(cfg_.intermediate);
    return static_cast<size_t>(n) * (3 * H + 2 * I) + attention_scratch_floats(cfg_, n) +
           static_cast<size_t>(n_out) * H + 256;
  }

  Status forward(const Step& step, KvCache& kv, ScratchArena& s, Tensor logits) override {
    Backend& b = backend_;
    const ModelConfig& c = cfg_;
    const int64_t n = step.n_tokens;
    const float eps = static_cast<float>(c.norm_eps);
    Tensor x = s.f32(n, c.hidden), h = s.f32(n, c.hidden), tmp = s.f32(n, c.hidden);
    Tensor gate = s.f32(n, c.intermediate), up = s.f32(n, c.intermediate);
    AttentionScratch as = attention_scratch(s, c, n);
    Tensor xo = s.f32(step.n_out, c.hidden);
    {
      Profiler::Scope ps(profiler_, Stage::Embed);
      b.embed(tok_embd_, step.tokens, x);
      b.scale(x, std::sqrt(static_cast<float>(c.hidden)));
    }
    for (int64_t il = 0; il < c.n_layers; ++il) {
      const Layer& L = layers_[static_cast<size_t>(il)];
      {
        Profiler::Scope ps(profiler_, Stage::Attention);
        b.rms_norm(x, L.attn_norm, eps, h);
        attention_forward(b, c, L.attn, L.sliding ? rope_local_ : rope_global_,
                          L.sliding ? attn_local_ : attn_global_, step, kv, il, h, as, tmp);
        b.rms_norm(tmp, L.post_attn_norm, eps, tmp);
        b.add_rms_norm(x, tmp, L.ffn_norm, eps, h);
      }
      {
        Profiler::Scope ps(profiler_, Stage::FFN);
        const MatmulOut gate_up[] = {{&L.mlp.gate, gate}, {&L.mlp.up, up}};
        b.matmul_group(h, gate_up);
        b.gelu_tanh_mul(gate, up, gate);
        b.matmul(gate, L.mlp.down, tmp);
        b.rms_norm(tmp, L.post_ffn_norm, eps, tmp);
        b.add(x, tmp);
      }
    }
    Profiler::Scope ps(profiler_, Stage::LmHead);
    b.gather_rows(x, step.out_rows, xo);
    b.rms_norm(xo, out_norm_, eps, xo);
    b.matmul(xo, output_, logits);
    if (c.final_logit_softcap > 0) b.softcap(logits, static_cast<float>(c.final_logit_softcap));
    return {};
  }

 private:
  // A norm weight as the plain RMSNorm multiplier: 1 + w for HF weights, as stored for GGUF.
  Result<Tensor> norm(WeightStore& w, const std::string& name, int64_t n) {
    FERRUM_ASSIGN_OR_RETURN(Tensor t, w.vector(name, n));
    if (!hf_) return t;
    std::vector<float> host(static_cast<size_t>(n));
    backend_.copy_to_host(host.data(), t.data, host.size() * sizeof(float));
    for (float& v : host) v += 1.0f;
    return w.own_vector(host);
  }

  struct Layer {
    Tensor attn_norm, post_attn_norm, ffn_norm, post_ffn_norm;
    AttentionWeights attn;
    MlpWeights mlp;
    bool sliding = false;
  };
  bool hf_ = false;
  Tensor tok_embd_, out_norm_, output_;
  std::vector<Layer> layers_;
  RopeParams rope_global_, rope_local_;
  AttentionParams attn_global_, attn_local_;
};

}  // namespace

Result<std::unique_ptr<Model>> build_gemma3(WeightStore& weights, Backend& backend, Profiler& profiler) {
  weights.bind(&backend, &gemma3_names());
  auto m = std::make_unique<Gemma3>(weights.config(), backend, profiler);
  FERRUM_TRY(m->load(weights));
  return std::unique_ptr<Model>(std::move(m));
}

}  // namespace ferrum
