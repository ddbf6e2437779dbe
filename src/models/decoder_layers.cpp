#include "models/decoder_layers.h"

#include <fmt/format.h>

#include <cmath>

namespace ferrum {

namespace {
std::string blk(int64_t il, const char* name) { return fmt::format("blk.{}.{}", il, name); }

Result<Tensor> optional_vector(WeightStore& w, const std::string& name, int64_t n) {
  if (!w.has(name)) return Tensor{};
  return w.vector(name, n);
}
}  // namespace

Result<AttentionWeights> load_attention(WeightStore& w, const ModelConfig& c, int64_t il) {
  AttentionWeights a;
  const int64_t qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
  FERRUM_ASSIGN_OR_RETURN(a.wq, w.matrix(blk(il, "attn_q.weight"), qd, c.hidden));
  FERRUM_ASSIGN_OR_RETURN(a.wk, w.matrix(blk(il, "attn_k.weight"), kvd, c.hidden));
  FERRUM_ASSIGN_OR_RETURN(a.wv, w.matrix(blk(il, "attn_v.weight"), kvd, c.hidden));
  FERRUM_ASSIGN_OR_RETURN(a.wo, w.matrix(blk(il, "attn_output.weight"), c.hidden, qd));
  FERRUM_ASSIGN_OR_RETURN(a.bq, optional_vector(w, blk(il, "attn_q.bias"), qd));
  FERRUM_ASSIGN_OR_RETURN(a.bk, optional_vector(w, blk(il, "attn_k.bias"), kvd));
  FERRUM_ASSIGN_OR_RETURN(a.bv, optional_vector(w, blk(il, "attn_v.bias"), kvd));
  FERRUM_ASSIGN_OR_RETURN(a.bo, optional_vector(w, blk(il, "attn_output.bias"), c.hidden));
  if (c.attn_bias && (a.bq.empty() || a.bk.empty() || a.bv.empty()))
    return Error(w.path() + ": missing tensor '" + blk(il, "attn_q/k/v.bias") +
                 "' (the config has attention biases)");
  if (c.qk_norm) {
    FERRUM_ASSIGN_OR_RETURN(a.q_norm, w.vector(blk(il, "attn_q_norm.weight"), c.head_dim));
    FERRUM_ASSIGN_OR_RETURN(a.k_norm, w.vector(blk(il, "attn_k_norm.weight"), c.head_dim));
  }
  return a;
}

Result<MlpWeights> load_mlp(WeightStore& w, int64_t il, int64_t hidden, int64_t intermediate,
                            const std::string& suffix) {
  MlpWeights m;
  FERRUM_ASSIGN_OR_RETURN(m.gate,
                          w.matrix(blk(il, ("ffn_gate" + suffix + ".weight").c_str()), intermediate, hidden));
  FERRUM_ASSIGN_OR_RETURN(m.up,
                          w.matrix(blk(il, ("ffn_up" + suffix + ".weight").c_str()), intermediate, hidden));
  FERRUM_ASSIGN_OR_RETURN(m.down,
                          w.matrix(blk(il, ("ffn_down" + suffix + ".weight").c_str()), hidden, intermediate));
  return m;
}

Result<Tensor> load_output_head(WeightStore& w, const ModelConfig& c, const Tensor& tok_embd) {
  if (w.has("output.weight")) return w.matrix("output.weight", c.vocab_size, c.hidden);
  if (c.tie_embeddings || w.is_gguf()) return tok_embd;
  return Error(w.path() + ": missing tensor 'lm_head.weight' (tie_word_embeddings is false)");
}

RopeStyle rope_style_for(const WeightStore& w, const ModelConfig& c) {
  return (w.is_gguf() && c.arch == "llama") ? RopeStyle::Adjacent : RopeStyle::Neox;
}

Result<Tensor> load_rope_frequencies(WeightStore& w, Backend& backend, const ModelConfig& c, double theta) {
  const int64_t half = c.rope_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  const RopeScaling& rs = c.rope_scaling;
  for (int64_t i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(theta, double(2 * i) / double(c.rope_dim));
    if (rs.type == "linear") {
      f /= rs.factor;
    } else if (rs.type == "llama3") {
      // Long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
      const double low_wavelen = double(rs.original_max_position) / rs.low_freq_factor;
      const double high_wavelen = double(rs.original_max_position) / rs.high_freq_factor;
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f /= rs.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (double(rs.original_max_position) / wavelen - rs.low_freq_factor) /
                              (rs.high_freq_factor - rs.low_freq_factor);
        f = (1.0 - smooth) * f / rs.factor + smooth * f;
      }
    }
    inv[static_cast<size_t>(i)] = static_cast<float>(f);
  }
  if (w.is_gguf() && w.has("rope_freqs.weight")) {
    FERRUM_ASSIGN_OR_RETURN(Tensor factors, w.vector("rope_freqs.weight", half));
    std::vector<float> host(static_cast<size_t>(half));
    backend.copy_to_host(host.data(), factors.data, host.size() * sizeof(float));
    for (int64_t i = 0; i < half; ++i) inv[static_cast<size_t>(i)] /= host[static_cast<size_t>(i)];
  }
  return w.own_vector(inv);
}

size_t attention_scratch_floats(const ModelConfig& c, int64_t n) {
  const size_t qd = static_cast<size_t>(c.n_heads * c.head_dim),
               kvd = static_cast<size_t>(c.n_kv_heads * c.head_dim);
  return static_cast<size_t>(n) * (2 * qd + 2 * kvd) + 64;
}

AttentionScratch attention_scratch(ScratchArena& s, const ModelConfig& c, int64_t n) {
  AttentionScratch a;
  a.q = s.f32(n, c.n_heads * c.head_dim);
  a.k = s.f32(n, c.n_kv_heads * c.head_dim);
  a.v = s.f32(n, c.n_kv_heads * c.head_dim);
  a.out = s.f32(n, c.n_heads * c.head_dim);
  return a;
}

void attention_forward(Backend& b, const ModelConfig& c, const AttentionWeights& w, const RopeParams& rope,
                       const AttentionParams& ap, const Step& step, KvCache& kv, int64_t il, const Tensor& h,
                       AttentionScratch& s, Tensor out_proj) {
  const MatmulOut qkv[] = {{&w.wq, s.q}, {&w.wk, s.k}, {&w.wv, s.v}};
  b.matmul_group(h, qkv);
  if (!w.bq.empty()) b.add_bias(s.q, w.bq);
  if (!w.bk.empty()) b.add_bias(s.k, w.bk);
  if (!w.bv.empty()) b.add_bias(s.v, w.bv);
  const bool ring = kv.windowed(il);
  b.rope_and_cache({.q = s.q,
                    .k = s.k,
                    .v = s.v,
                    .n_heads = c.n_heads,
                    .n_kv_heads = c.n_kv_heads,
                    .q_norm = w.q_norm,
                    .k_norm = w.k_norm,
                    .eps = static_cast<float>(c.norm_eps),
                    .rope = rope,
                    .positions = step.layout.positions,
                    .k_cache = kv.k(il),
                    .v_cache = kv.v(il),
                    .slots = ring ? step.window_slots : step.slots});
  b.attention(s.q, kv.k(il), kv.v(il), ring ? step.window_layout : step.layout, ap, s.out);
  b.matmul(s.out, w.wo, out_proj);
  if (!w.bo.empty()) b.add_bias(out_proj, w.bo);
}

}  // namespace ferrum
