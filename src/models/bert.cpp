// BERT encoders (BertModel, sentence-transformers checkpoints such as all-MiniLM-L6-v2).
// Embeddings: word + learned position + token type 0, then LayerNorm. Post-norm blocks:
// x = LN(x + Attn(x)); x = LN(x + down(gelu_erf(up(x)))), every projection with a bias.
// Attention is bidirectional: the runtime sets each token's kv_end to its sequence's length, and
// the step's K/V go through the paged cache like a decoder's prefill. The output rows are the
// final hidden states; pooling happens in the runtime.
#include <fmt/format.h>

#include <cmath>

#include "models/model.h"

namespace ferrum {

namespace {

// HF names as BertModel and sentence-transformers folders store them.
constexpr NamePair kPairs[] = {
    {"token_embd.weight", "embeddings.word_embeddings.weight"},
    {"position_embd.weight", "embeddings.position_embeddings.weight"},
    {"token_types.weight", "embeddings.token_type_embeddings.weight"},
    {"token_embd_norm.weight", "embeddings.LayerNorm.weight"},
    {"token_embd_norm.bias", "embeddings.LayerNorm.bias"},
    {"blk.{}.attn_q.weight", "encoder.layer.{}.attention.self.query.weight"},
    {"blk.{}.attn_q.bias", "encoder.layer.{}.attention.self.query.bias"},
    {"blk.{}.attn_k.weight", "encoder.layer.{}.attention.self.key.weight"},
    {"blk.{}.attn_k.bias", "encoder.layer.{}.attention.self.key.bias"},
    {"blk.{}.attn_v.weight", "encoder.layer.{}.attention.self.value.weight"},
    {"blk.{}.attn_v.bias", "encoder.layer.{}.attention.self.value.bias"},
    {"blk.{}.attn_output.weight", "encoder.layer.{}.attention.output.dense.weight"},
    {"blk.{}.attn_output.bias", "encoder.layer.{}.attention.output.dense.bias"},
    {"blk.{}.attn_output_norm.weight", "encoder.layer.{}.attention.output.LayerNorm.weight"},
    {"blk.{}.attn_output_norm.bias", "encoder.layer.{}.attention.output.LayerNorm.bias"},
    {"blk.{}.ffn_up.weight", "encoder.layer.{}.intermediate.dense.weight"},
    {"blk.{}.ffn_up.bias", "encoder.layer.{}.intermediate.dense.bias"},
    {"blk.{}.ffn_down.weight", "encoder.layer.{}.output.dense.weight"},
    {"blk.{}.ffn_down.bias", "encoder.layer.{}.output.dense.bias"},
    {"blk.{}.layer_output_norm.weight", "encoder.layer.{}.output.LayerNorm.weight"},
    {"blk.{}.layer_output_norm.bias", "encoder.layer.{}.output.LayerNorm.bias"},
};

// BertFor* checkpoints (and some exports) nest the same tensors under "bert.".
const std::vector<NamePair>& prefixed_pairs() {
  static const std::vector<std::string> hf = [] {
    std::vector<std::string> v;
    for (const NamePair& p : kPairs) v.push_back(std::string("bert.") + p.hf);
    return v;
  }();
  static const std::vector<NamePair> pairs = [] {
    std::vector<NamePair> v;
    for (size_t i = 0; i < std::size(kPairs); ++i) v.push_back({kPairs[i].gguf, hf[i].c_str()});
    return v;
  }();
  return pairs;
}

const NameMap& prefixed_names() {
  static const NameMap kNames(prefixed_pairs());
  return kNames;
}

}  // namespace

// Unprefixed names first, so to_hf() gives those; to_gguf() accepts both spellings. The pooler,
// the MLM/NSP heads and the position_ids buffer are not part of the encoder (llama.cpp drops them too).
const NameMap& bert_names() {
  static const NameMap kNames(
      [] {
        std::vector<NamePair> v(std::begin(kPairs), std::end(kPairs));
        v.insert(v.end(), prefixed_pairs().begin(), prefixed_pairs().end());
        return v;
      }(),
      {"pooler.", "cls.", "embeddings.position_ids", "bert.pooler.", "bert.embeddings.position_ids"});
  return kNames;
}

namespace {

struct Linear {
  Tensor w, b;
};
struct Norm {
  Tensor w, b;
};

class Bert : public Model {
 public:
  Bert(const ModelConfig& c, Backend& b, Profiler& p) : Model(c, b, p) {}

  Status load(WeightStore& w) {
    const ModelConfig& c = cfg_;
    const std::string& where = w.path();
    if (c.n_kv_heads != c.n_heads || c.n_heads * c.head_dim != c.hidden)
      return Error(fmt::format("{}: BERT needs head_count * head_dim == hidden ({} * {} != {}) and no GQA",
                               where, c.n_heads, c.head_dim, c.hidden));
    if (c.intermediate <= 0) return Error(where + ": BERT needs intermediate_size > 0");
    if (c.type_vocab_size <= 0)
      return Error(where + ": BERT needs type_vocab_size > 0 (token type embeddings)");
    const int64_t H = c.hidden;
    FERRUM_ASSIGN_OR_RETURN(tok_embd_, w.matrix("token_embd.weight", c.vocab_size, H));
    FERRUM_ASSIGN_OR_RETURN(pos_embd_, w.matrix("position_embd.weight", c.max_position, H));
    FERRUM_ASSIGN_OR_RETURN(Tensor types, w.matrix("token_types.weight", c.type_vocab_size, H));
    FERRUM_ASSIGN_OR_RETURN(embd_norm_, load_norm(w, "token_embd_norm"));
    FERRUM_ASSIGN_OR_RETURN(type0_, token_type0(w, types));
    layers_.resize(static_cast<size_t>(c.n_layers));
    for (int64_t il = 0; il < c.n_layers; ++il) {
      Layer& L = layers_[static_cast<size_t>(il)];
      auto blk = [il](const char* n) { return fmt::format("blk.{}.{}", il, n); };
      FERRUM_ASSIGN_OR_RETURN(L.q, load_linear(w, blk("attn_q"), H, H));
      FERRUM_ASSIGN_OR_RETURN(L.k, load_linear(w, blk("attn_k"), H, H));
      FERRUM_ASSIGN_OR_RETURN(L.v, load_linear(w, blk("attn_v"), H, H));
      FERRUM_ASSIGN_OR_RETURN(L.o, load_linear(w, blk("attn_output"), H, H));
      FERRUM_ASSIGN_OR_RETURN(L.attn_norm, load_norm(w, blk("attn_output_norm")));
      FERRUM_ASSIGN_OR_RETURN(L.up, load_linear(w, blk("ffn_up"), c.intermediate, H));
      FERRUM_ASSIGN_OR_RETURN(L.down, load_linear(w, blk("ffn_down"), H, c.intermediate));
      FERRUM_ASSIGN_OR_RETURN(L.out_norm, load_norm(w, blk("layer_output_norm")));
    }
    attn_ = {c.n_heads, c.n_heads, c.head_dim, static_cast<float>(1.0 / std::sqrt(double(c.head_dim))), 0};
    return {};
  }

  bool causal() const override { return false; }
  int64_t kv_dim() const override { return cfg_.hidden; }
  int64_t output_width() const override { return cfg_.hidden; }

  size_t scratch_floats(int64_t n, int64_t) const override {
    const size_t H = static_cast<size_t>(cfg_.hidden), I = static_cast<size_t>(cfg_.intermediate);
    return static_cast<size_t>(n) * (6 * H + I) + 256;
  }

  Status forward(const Step& step, KvCache& kv, ScratchArena& s, Tensor out) override {
    Backend& b = backend_;
    const ModelConfig& c = cfg_;
    const int64_t n = step.n_tokens, H = c.hidden;
    const float eps = static_cast<float>(c.norm_eps);
    Tensor x = s.f32(n, H), sum = s.f32(n, H);
    Tensor q = s.f32(n, H), k = s.f32(n, H), v = s.f32(n, H), att = s.f32(n, H);
    Tensor inter = s.f32(n, c.intermediate);
    {
      Profiler::Scope ps(profiler_, Stage::Embed);
      b.embed(tok_embd_, step.tokens, sum);
      b.embed(pos_embd_, step.layout.positions, x);
      b.add(sum, x);
      b.add_bias(sum, type0_);
      b.layer_norm(sum, embd_norm_.w, embd_norm_.b, eps, x);
    }
    for (int64_t il = 0; il < c.n_layers; ++il) {
      const Layer& L = layers_[static_cast<size_t>(il)];
      {
        Profiler::Scope ps(profiler_, Stage::Attention);
        linear(x, L.q, q);
        linear(x, L.k, k);
        linear(x, L.v, v);
        b.kv_write(kv.k(il), kv.v(il), k, v, step.slots);
        b.attention(q, kv.k(il), kv.v(il), step.layout, attn_, att);
        linear(att, L.o, sum);
        b.add(sum, x);
        b.layer_norm(sum, L.attn_norm.w, L.attn_norm.b, eps, x);
      }
      {
        Profiler::Scope ps(profiler_, Stage::FFN);
        linear(x, L.up, inter);
        b.gelu_erf(inter);
        linear(inter, L.down, sum);
        b.add(sum, x);
        b.layer_norm(sum, L.out_norm.w, L.out_norm.b, eps, x);
      }
    }
    b.gather_rows(x, step.out_rows, out);
    return {};
  }

 private:
  struct Layer {
    Linear q, k, v, o, up, down;
    Norm attn_norm, out_norm;
  };

  void linear(const Tensor& x, const Linear& l, Tensor out) {
    backend_.matmul(x, l.w, out);
    backend_.add_bias(out, l.b);
  }

  static Result<Linear> load_linear(WeightStore& w, const std::string& base, int64_t rows, int64_t cols) {
    Linear l;
    FERRUM_ASSIGN_OR_RETURN(l.w, w.matrix(base + ".weight", rows, cols));
    FERRUM_ASSIGN_OR_RETURN(l.b, w.vector(base + ".bias", rows));
    return l;
  }

  Result<Norm> load_norm(WeightStore& w, const std::string& base) {
    Norm nm;
    FERRUM_ASSIGN_OR_RETURN(nm.w, w.vector(base + ".weight", cfg_.hidden));
    FERRUM_ASSIGN_OR_RETURN(nm.b, w.vector(base + ".bias", cfg_.hidden));
    return nm;
  }

  // Row 0 of the token type table as a bias vector: inputs carry no token_type_ids, so every
  // token has type 0 (HF's default). Looked up once with the backend's own embed op.
  Result<Tensor> token_type0(WeightStore& w, const Tensor& types) {
    FERRUM_ASSIGN_OR_RETURN(Tensor row, w.own_vector(std::vector<float>(static_cast<size_t>(cfg_.hidden))));
    FERRUM_ASSIGN_OR_RETURN(void* id_mem, backend_.alloc(sizeof(int32_t)));
    const int32_t zero = 0;
    backend_.copy_to_device(id_mem, &zero, sizeof(zero));
    backend_.embed(types, static_cast<const int32_t*>(id_mem), row);
    backend_.sync();
    backend_.free(id_mem);
    return row;
  }

  Tensor tok_embd_, pos_embd_, type0_;
  Norm embd_norm_;
  std::vector<Layer> layers_;
  AttentionParams attn_;
};

}  // namespace

Result<std::unique_ptr<Model>> build_bert(WeightStore& weights, Backend& backend, Profiler& profiler) {
  const bool prefixed =
      !weights.is_gguf() && weights.hf_tensors().count("bert.embeddings.word_embeddings.weight");
  weights.bind(&backend, prefixed ? &prefixed_names() : &bert_names());
  auto m = std::make_unique<Bert>(weights.config(), backend, profiler);
  FERRUM_TRY(m->load(weights));
  return std::unique_ptr<Model>(std::move(m));
}

}  // namespace ferrum
