#include "models/gguf_export.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <fmt/format.h>

#include "formats/gguf_writer.h"
#include "models/model.h"
#include "models/weights.h"
#include "quant/matmul.h"
#include "quant/quantize.h"

namespace ferrum {

Result<FileType> parse_file_type(const std::string& n) {
  static const FileType kTypes[] = {
      {"F32", DType::F32, false, 0},      {"F16", DType::F16, false, 1},   {"BF16", DType::BF16, false, 32},
      {"Q8_0", DType::Q8_0, false, 7},    {"Q4_0", DType::Q4_0, false, 2}, {"Q4_K_M", DType::Q4_K, true, 15},
      {"Q5_K_M", DType::Q5_K, true, 17},  {"Q6_K", DType::Q6_K, false, 18},
  };
  for (const FileType& t : kTypes)
    if (t.name == n) return t;
  return Error("unknown quantization type '" + n + "' (F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q5_K_M, Q6_K)");
}

namespace {

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

int64_t layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  return std::stoll(name.substr(4, name.find('.', 4) - 4));
}

// llama.cpp's use_more_bits: the first and last eighth of the layers, and every third in between.
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

}  // namespace

DType choose_tensor_type(const FileType& ft, const std::string& name, const std::vector<int64_t>& dims,
                         const TensorTypeContext& ctx) {
  if (dims.size() < 2 || ends_with(name, "ffn_gate_inp.weight") || name == "rope_freqs.weight" ||
      ends_with(name, "_norm.weight") || ends_with(name, ".bias") || name.find("position_embd") != std::string::npos ||
      name.find("token_types") != std::string::npos)
    return DType::F32;
  if (!dtype_is_quantized(ft.base)) return ft.base;
  DType t = ft.base;
  const bool is_output = name == "output.weight" || (ctx.tied_output && name == "token_embd.weight");
  if (is_output) {
    if (t != DType::Q8_0) t = DType::Q6_K;
  } else if (ft.mix && ends_with(name, "attn_v.weight")) {
    if (ctx.n_experts == 8) t = DType::Q8_0;
    else if (use_more_bits(layer_of(name), ctx.n_layers)) t = DType::Q6_K;
  } else if (ft.mix && (ends_with(name, "ffn_down.weight") || ends_with(name, "ffn_down_exps.weight"))) {
    if (use_more_bits(layer_of(name), ctx.n_layers)) t = DType::Q6_K;
  }
  if (dims[0] % traits(t).block_elems != 0) {
    // llama.cpp falls back to Q5_1 for Q5_K; ferrum has no Q5_1 kernels, so Q8_0 (more bits) instead.
    t = t == DType::Q4_K ? DType::Q5_0 : DType::Q8_0;
    if (dims[0] % 32 != 0) t = DType::F16;
  }
  return t;
}

namespace {

struct Source {
  std::string name;          // internal (GGUF) name
  DType type;
  std::vector<int64_t> dims;  // GGML order
  // The data: one part, or one per expert for a stack gathered from a Hugging Face folder's
  // per-expert tensors.
  std::vector<const uint8_t*> parts;
  int64_t permute_heads = 0;  // >0: reorder rows for adjacent-pair RoPE (llama Q/K from HF)
};

// llama.cpp's converter permutes LLaMA Q/K rows so that RoPE rotates adjacent pairs: within each
// head, row (j * hd/2 + i) moves to (2i + j).
void permute_rows(const float* src, float* dst, int64_t rows, int64_t cols, int64_t n_heads) {
  const int64_t hd = rows / n_heads, half = hd / 2;
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < half; ++i)
        std::memcpy(dst + (h * hd + 2 * i + j) * cols, src + (h * hd + j * half + i) * cols,
                    static_cast<size_t>(cols) * sizeof(float));
}

// "blk.N.ffn_gate_exps.E.weight" (expert E of an HF folder) -> GGUF's stack "blk.N.ffn_gate_exps.weight".
bool split_expert_name(const std::string& name, std::string* stack, int64_t* expert) {
  const size_t p = name.find("_exps.");
  if (p == std::string::npos) return false;
  const size_t d0 = p + 6, d1 = name.find('.', d0);
  if (d1 == std::string::npos || d1 == d0) return false;
  for (size_t i = d0; i < d1; ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  *expert = std::stoll(name.substr(d0, d1 - d0));
  *stack = name.substr(0, p + 5) + name.substr(d1);
  return true;
}

void set_arch_metadata(GgufWriter& w, const ModelConfig& c) {
  const std::string a = c.arch;
  w.set_string("general.architecture", a);
  if (!c.name.empty()) w.set_string("general.name", c.name);
  w.set_u32(a + ".context_length", static_cast<uint32_t>(c.max_position));
  w.set_u32(a + ".embedding_length", static_cast<uint32_t>(c.hidden));
  w.set_u32(a + ".block_count", static_cast<uint32_t>(c.n_layers));
  if (c.intermediate > 0) w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(c.intermediate));
  w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(c.n_heads));
  w.set_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  w.set_u32(a + ".attention.key_length", static_cast<uint32_t>(c.head_dim));
  w.set_u32(a + ".attention.value_length", static_cast<uint32_t>(c.head_dim));
  if (a == "bert") w.set_f32(a + ".attention.layer_norm_epsilon", static_cast<float>(c.norm_eps));
  else w.set_f32(a + ".attention.layer_norm_rms_epsilon", static_cast<float>(c.norm_eps));
  w.set_f32(a + ".rope.freq_base", static_cast<float>(c.rope_theta));
  w.set_u32(a + ".rope.dimension_count", static_cast<uint32_t>(c.rope_dim));
  w.set_u32(a + ".vocab_size", static_cast<uint32_t>(c.vocab_size));
  if (c.n_experts > 0) {
    w.set_u32(a + ".expert_count", static_cast<uint32_t>(c.n_experts));
    w.set_u32(a + ".expert_used_count", static_cast<uint32_t>(c.n_experts_used));
    w.set_u32(a + ".expert_feed_forward_length", static_cast<uint32_t>(c.moe_intermediate));
    w.set_bool(a + ".expert_weights_norm", c.norm_topk_prob);
  }
  if (c.rope_scaling.type == "linear") {
    w.set_string(a + ".rope.scaling.type", "linear");
    w.set_f32(a + ".rope.scaling.factor", static_cast<float>(c.rope_scaling.factor));
  }
  if (a == "bert") {
    // What llama.cpp's BERT converter writes: bidirectional attention, the pooling, token types.
    w.set_bool(a + ".attention.causal", false);
    w.set_u32(a + ".pooling_type", c.pooling == Pooling::None ? 0u : c.pooling == Pooling::Mean ? 1u : 2u);
    w.set_u32("tokenizer.ggml.token_type_count", static_cast<uint32_t>(c.type_vocab_size));
  }
  if (c.bos_id >= 0) w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(c.bos_id));
  if (!c.eos_ids.empty()) w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(c.eos_ids[0]));
}

// llama3 RoPE scaling travels in GGUF as per-frequency divisors (`rope_freqs.weight`), as
// llama.cpp's converter writes it.
std::vector<float> llama3_rope_factors(const ModelConfig& c) {
  const RopeScaling& rs = c.rope_scaling;
  std::vector<float> f;
  const double low_wavelen = double(rs.original_max_position) / rs.low_freq_factor;
  const double high_wavelen = double(rs.original_max_position) / rs.high_freq_factor;
  for (int64_t i = 0; i < c.rope_dim / 2; ++i) {
    const double freq = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(c.rope_dim));
    const double wavelen = 2.0 * M_PI / freq;
    if (wavelen < high_wavelen) f.push_back(1.0f);
    else if (wavelen > low_wavelen) f.push_back(static_cast<float>(rs.factor));
    else {
      const double smooth = (double(rs.original_max_position) / wavelen - rs.low_freq_factor) /
                            (rs.high_freq_factor - rs.low_freq_factor);
      f.push_back(static_cast<float>(1.0 / ((1.0 - smooth) / rs.factor + smooth)));
    }
  }
  return f;
}

}  // namespace

Status quantize_model(const std::string& in, const std::string& out, const std::string& type,
                      const std::function<void(size_t, size_t)>& progress) {
  FERRUM_ASSIGN_OR_RETURN(FileType ft, parse_file_type(type));
  FERRUM_ASSIGN_OR_RETURN(auto store, WeightStore::open(in));
  const ModelConfig& c = store->config();
  GgufWriter w;
  std::vector<Source> sources;
  auto rope_factors = std::make_shared<std::vector<float>>();
  if (store->is_gguf()) {
    for (auto& [key, v] : store->gguf()->metadata())
      if (key != "general.file_type" && key != "general.quantization_version" && key != "general.alignment")
        w.set_value(key, v);
    for (const GgufTensorInfo& t : store->gguf()->tensors()) {
      if (t.type != DType::F32 && t.type != DType::F16 && t.type != DType::BF16)
        return Error(fmt::format("{}: tensor '{}' is already {}; quantize from an F32/F16/BF16 file", in, t.name,
                                 dtype_name(t.type)));
      sources.push_back({t.name, t.type, t.dims, {t.data}, 0});
    }
  } else {
    FERRUM_ASSIGN_OR_RETURN(const Architecture* arch, find_architecture(c.arch));
    const NameMap& names = arch->hf_names();
    set_arch_metadata(w, c);
    std::map<std::string, size_t> stacks;  // GGUF expert stack -> its index in sources
    for (auto& [hf, t] : store->hf_tensors()) {
      std::string g = names.to_gguf(hf);
      if (g.empty() && names.unused(hf)) continue;
      if (g.empty()) return Error(in + ": tensor '" + hf + "' has no GGUF name for architecture " + c.arch);
      std::vector<int64_t> dims(t.shape.rbegin(), t.shape.rend());
      std::string stack;
      int64_t expert = 0;
      if (split_expert_name(g, &stack, &expert)) {
        if (expert >= c.n_experts)
          return Error(fmt::format("{}: tensor '{}' is expert {} but the config has {} experts", in, hf,
                                   expert, c.n_experts));
        auto [it, first] = stacks.try_emplace(stack, sources.size());
        if (first) {
          std::vector<int64_t> stacked = dims;
          stacked.push_back(c.n_experts);
          sources.push_back(
              {stack, t.type, stacked, std::vector<const uint8_t*>(static_cast<size_t>(c.n_experts)), 0});
        }
        Source& s = sources[it->second];
        if (dims.size() != 2 || s.type != t.type || !std::equal(dims.begin(), dims.end(), s.dims.begin()))
          return Error(
              fmt::format("{}: tensor '{}' does not match the type and shape of the other experts of '{}'",
                          in, hf, stack));
        s.parts[static_cast<size_t>(expert)] = t.data;
        continue;
      }
      Source s{g, t.type, dims, {t.data}, 0};
      if (c.arch == "llama" && (g.find("attn_q.") != std::string::npos || g.find("attn_k.") != std::string::npos))
        s.permute_heads = g.find("attn_q.") != std::string::npos ? c.n_heads : c.n_kv_heads;
      sources.push_back(std::move(s));
    }
    if (c.arch == "llama" && c.rope_scaling.type == "llama3") {
      *rope_factors = llama3_rope_factors(c);
      sources.push_back({"rope_freqs.weight", DType::F32, {c.rope_dim / 2},
                         {reinterpret_cast<const uint8_t*>(rope_factors->data())}, 0});
    }
    for (auto& [stack, i] : stacks)
      for (size_t e = 0; e < sources[i].parts.size(); ++e)
        if (!sources[i].parts[e]) return Error(fmt::format("{}: expert {} of '{}' is missing", in, e, stack));
  }
  w.set_u32("general.file_type", ft.gguf_id);
  if (dtype_is_quantized(ft.base)) w.set_u32("general.quantization_version", 2);

  TensorTypeContext ctx{c.n_layers, c.n_experts, true};
  for (const Source& s : sources)
    if (s.name == "output.weight") ctx.tied_output = false;
  for (const Source& s : sources) {
    const DType t = choose_tensor_type(ft, s.name, s.dims, ctx);
    w.add_tensor(s.name, t, s.dims, [s, t](std::vector<uint8_t>& bytes) -> Status {
      const int64_t cols = s.dims[0];
      int64_t rows = 1;
      for (size_t i = 1; i < s.dims.size(); ++i) rows *= s.dims[i];
      std::vector<float> f(static_cast<size_t>(rows * cols));
      const size_t in_row = row_bytes(s.type, cols);
      const int64_t part_rows = rows / static_cast<int64_t>(s.parts.size());
      for (int64_t r = 0; r < rows; ++r)
        quant::dequantize_row(s.type, s.parts[static_cast<size_t>(r / part_rows)] + (r % part_rows) * in_row,
                              f.data() + r * cols, cols);
      if (s.permute_heads > 0) {
        std::vector<float> p(f.size());
        permute_rows(f.data(), p.data(), rows, cols, s.permute_heads);
        f.swap(p);
      }
      const size_t out_row = row_bytes(t, cols);
      bytes.resize(out_row * static_cast<size_t>(rows));
#pragma omp parallel for schedule(dynamic, 16)
      for (int64_t r = 0; r < rows; ++r) quant::quantize_row(t, f.data() + r * cols, bytes.data() + r * out_row, cols);
      return {};
    });
  }
  return w.write(out, progress);
}

}  // namespace ferrum
