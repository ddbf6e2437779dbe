#include "ferrum/model_config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "formats/gguf.h"

namespace ferrum {

using json = nlohmann::json;

Status ModelConfig::validate(const std::string& where) const {
  auto bad = [&](const std::string& field, int64_t v) {
    return Error(where + ": field '" + field + "' = " + std::to_string(v) + " is invalid");
  };
  if (vocab_size <= 0) return bad("vocab_size", vocab_size);
  if (hidden <= 0) return bad("hidden_size", hidden);
  if (n_layers <= 0 || n_layers > 1024) return bad("num_hidden_layers", n_layers);
  if (n_heads <= 0) return bad("num_attention_heads", n_heads);
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0) return bad("num_key_value_heads", n_kv_heads);
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > 1024) return bad("head_dim", head_dim);
  if (rope_dim <= 0 || rope_dim > head_dim || rope_dim % 2 != 0) return bad("rope dimension", rope_dim);
  if (intermediate <= 0 && moe_intermediate <= 0) return bad("intermediate_size", intermediate);
  if (max_position <= 0) return bad("max_position_embeddings", max_position);
  if (n_experts > 0 && (n_experts_used <= 0 || n_experts_used > n_experts))
    return bad("num_experts_per_tok", n_experts_used);
  if (!(norm_eps > 0)) return Error(where + ": field 'rms_norm_eps' must be positive");
  return {};
}

namespace {

// Reads a JSON field of an expected kind, reporting the field name when the type is wrong.
class JsonFields {
 public:
  JsonFields(const json& j, std::string where) : j_(j), where_(std::move(where)) {}

  Status get_int(const char* key, int64_t* out, bool required = false) const {
    if (!j_.contains(key) || j_[key].is_null()) {
      return required ? Error(where_ + ": missing field '" + std::string(key) + "'") : Status();
    }
    if (!j_[key].is_number_integer()) return Error(where_ + ": field '" + key + "' must be an integer");
    *out = j_[key].get<int64_t>();
    return {};
  }
  Status get_double(const json& obj, const char* key, double* out) const {
    if (!obj.contains(key) || obj[key].is_null()) return {};
    if (!obj[key].is_number()) return Error(where_ + ": field '" + key + "' must be a number");
    *out = obj[key].get<double>();
    return {};
  }
  Status get_bool(const char* key, bool* out) const {
    if (!j_.contains(key) || j_[key].is_null()) return {};
    if (!j_[key].is_boolean()) return Error(where_ + ": field '" + key + "' must be true or false");
    *out = j_[key].get<bool>();
    return {};
  }

 private:
  const json& j_;
  std::string where_;
};

std::string arch_from_model_type(const std::string& mt) {
  if (mt == "llama" || mt == "mistral") return "llama";
  if (mt == "qwen2") return "qwen2";
  if (mt == "qwen3") return "qwen3";
  if (mt == "qwen3_moe") return "qwen3moe";
  if (mt == "bert") return "bert";
  if (mt == "gemma3_text" || mt == "gemma3") return "gemma3";
  return "";
}

Status parse_rope_scaling(const json& rs, const std::string& where, RopeScaling* out) {
  if (!rs.is_object()) return Error(where + ": field 'rope_scaling' must be an object");
  std::string type = "default";
  if (rs.contains("rope_type") && rs["rope_type"].is_string()) type = rs["rope_type"].get<std::string>();
  else if (rs.contains("type") && rs["type"].is_string()) type = rs["type"].get<std::string>();
  if (type != "default" && type != "llama3" && type != "linear")
    return Error(where + ": rope type '" + type + "' is not supported (default, linear, llama3)");
  out->type = type;
  JsonFields f(rs, where);
  FERRUM_TRY(f.get_double(rs, "factor", &out->factor));
  FERRUM_TRY(f.get_double(rs, "low_freq_factor", &out->low_freq_factor));
  FERRUM_TRY(f.get_double(rs, "high_freq_factor", &out->high_freq_factor));
  if (rs.contains("original_max_position_embeddings")) {
    if (!rs["original_max_position_embeddings"].is_number_integer())
      return Error(where + ": field 'original_max_position_embeddings' must be an integer");
    out->original_max_position = rs["original_max_position_embeddings"].get<int64_t>();
  }
  if (!(out->factor > 0)) return Error(where + ": rope scaling factor must be positive");
  return {};
}

}  // namespace

Result<ModelConfig> config_from_hf_json(const std::string& text, const std::string& where) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error(where + ": not valid JSON");
  if (!j.is_object()) return Error(where + ": top level is not an object");
  // Multimodal wrappers keep the language model's fields in text_config.
  if (j.contains("text_config") && j["text_config"].is_object()) {
    json t = j["text_config"];
    if (!t.contains("model_type") && j.contains("model_type")) t["model_type"] = j["model_type"];
    j = t;
  }
  ModelConfig c;
  if (!j.contains("model_type") || !j["model_type"].is_string())
    return Error(where + ": missing field 'model_type'");
  std::string mt = j["model_type"].get<std::string>();
  c.arch = arch_from_model_type(mt);
  if (c.arch.empty()) return Error(where + ": unknown architecture (model_type '" + mt + "')");
  JsonFields f(j, where);
  FERRUM_TRY(f.get_int("vocab_size", &c.vocab_size, true));
  FERRUM_TRY(f.get_int("hidden_size", &c.hidden, true));
  FERRUM_TRY(f.get_int("num_hidden_layers", &c.n_layers, true));
  FERRUM_TRY(f.get_int("num_attention_heads", &c.n_heads, true));
  c.n_kv_heads = c.n_heads;
  FERRUM_TRY(f.get_int("num_key_value_heads", &c.n_kv_heads));
  if (c.n_heads > 0) c.head_dim = c.hidden / c.n_heads;
  FERRUM_TRY(f.get_int("head_dim", &c.head_dim));
  FERRUM_TRY(f.get_int("intermediate_size", &c.intermediate));
  FERRUM_TRY(f.get_int("max_position_embeddings", &c.max_position));
  FERRUM_TRY(f.get_double(j, c.arch == "bert" ? "layer_norm_eps" : "rms_norm_eps", &c.norm_eps));
  FERRUM_TRY(f.get_bool("tie_word_embeddings", &c.tie_embeddings));
  FERRUM_TRY(f.get_bool("attention_bias", &c.attn_bias));
  if (c.arch == "qwen2") c.attn_bias = true;
  c.qk_norm = (c.arch == "qwen3" || c.arch == "qwen3moe" || c.arch == "gemma3");

  // transformers 5.x moved rope settings into rope_parameters (per layer type for Gemma 3:
  // {"full_attention": {...}, "sliding_attention": {...}}); 4.x has rope_theta + rope_scaling.
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    const json& rp = j["rope_parameters"];
    if (rp.contains("full_attention") && rp["full_attention"].is_object()) {
      FERRUM_TRY(f.get_double(rp["full_attention"], "rope_theta", &c.rope_theta));
      FERRUM_TRY(parse_rope_scaling(rp["full_attention"], where, &c.rope_scaling));
      if (rp.contains("sliding_attention") && rp["sliding_attention"].is_object())
        FERRUM_TRY(f.get_double(rp["sliding_attention"], "rope_theta", &c.rope_theta_local));
    } else {
      FERRUM_TRY(f.get_double(rp, "rope_theta", &c.rope_theta));
      FERRUM_TRY(parse_rope_scaling(rp, where, &c.rope_scaling));
    }
  }
  FERRUM_TRY(f.get_double(j, "rope_local_base_freq", &c.rope_theta_local));
  if (j.contains("layer_types") && j["layer_types"].is_array()) {
    for (const json& t : j["layer_types"]) c.sliding_layers.push_back(t == "sliding_attention");
    if (static_cast<int64_t>(c.sliding_layers.size()) != c.n_layers)
      return Error(where + ": field 'layer_types' has " + std::to_string(c.sliding_layers.size()) + " entries for " +
                   std::to_string(c.n_layers) + " layers");
  }
  if (j.contains("sliding_window") && j["sliding_window"].is_number_integer())
    c.sliding_window = j["sliding_window"].get<int64_t>();
  // Qwen2/3 configs carry layer_types and a sliding window that is off unless use_sliding_window.
  if (c.arch != "gemma3" && !(j.contains("use_sliding_window") && j["use_sliding_window"] == true)) {
    c.sliding_layers.clear();
    c.sliding_window = 0;
  }
  if (j.contains("query_pre_attn_scalar") && j["query_pre_attn_scalar"].is_number())
    c.attn_scale = 1.0 / std::sqrt(j["query_pre_attn_scalar"].get<double>());
  FERRUM_TRY(f.get_double(j, "final_logit_softcapping", &c.final_logit_softcap));
  FERRUM_TRY(f.get_double(j, "rope_theta", &c.rope_theta));
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    FERRUM_TRY(parse_rope_scaling(j["rope_scaling"], where, &c.rope_scaling));
  c.rope_dim = c.head_dim;
  if (j.contains("partial_rotary_factor") && j["partial_rotary_factor"].is_number())
    c.rope_dim = static_cast<int64_t>(static_cast<double>(c.head_dim) * j["partial_rotary_factor"].get<double>());

  c.n_experts = 0;
  FERRUM_TRY(f.get_int("num_local_experts", &c.n_experts));
  FERRUM_TRY(f.get_int("num_experts", &c.n_experts));
  FERRUM_TRY(f.get_int("num_experts_per_tok", &c.n_experts_used));
  FERRUM_TRY(f.get_int("moe_intermediate_size", &c.moe_intermediate));
  FERRUM_TRY(f.get_bool("norm_topk_prob", &c.norm_topk_prob));
  FERRUM_TRY(f.get_int("decoder_sparse_step", &c.decoder_sparse_step));
  if (j.contains("mlp_only_layers") && j["mlp_only_layers"].is_array())
    for (auto& v : j["mlp_only_layers"])
      if (v.is_number_integer()) c.mlp_only_layers.push_back(v.get<int64_t>());
  FERRUM_TRY(f.get_int("type_vocab_size", &c.type_vocab_size));

  if (j.contains("eos_token_id")) {
    const json& e = j["eos_token_id"];
    if (e.is_number_integer()) c.eos_ids.push_back(e.get<int64_t>());
    else if (e.is_array())
      for (auto& v : e)
        if (v.is_number_integer()) c.eos_ids.push_back(v.get<int64_t>());
  }
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer()) c.bos_id = j["bos_token_id"].get<int64_t>();
  if (c.arch == "bert") c.n_kv_heads = c.n_heads;
  if (c.arch == "bert") c.rope_dim = c.head_dim;  // unused by encoders, kept valid
  FERRUM_TRY(c.validate(where));
  return c;
}

namespace {

Result<json> read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error(path + ": cannot open");
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error(path + ": not valid JSON");
  return j;
}

// A sentence-transformers folder lists its pipeline in modules.json: the Transformer (this
// folder), then Pooling (its config in <path>/config.json) and optionally Normalize. Modules that
// would change the vectors in ways ferrum does not reproduce (Dense, other pooling modes) are errors.
Status read_sentence_transformers(const std::filesystem::path& dir, ModelConfig* c) {
  const std::string where = (dir / "modules.json").string();
  FERRUM_ASSIGN_OR_RETURN(json mods, read_json_file(where));
  if (!mods.is_array()) return Error(where + ": top level is not an array");
  for (const json& m : mods) {
    if (!m.is_object() || !m.contains("type") || !m["type"].is_string())
      return Error(where + ": a module without a string field 'type'");
    const std::string type = m["type"].get<std::string>();
    const std::string kind = type.substr(type.rfind('.') + 1);
    if (kind == "Transformer") continue;
    if (kind == "Normalize") {
      c->normalize = true;
      continue;
    }
    if (kind != "Pooling") return Error(where + ": module type '" + type + "' is not supported");
    const std::string sub = m.contains("path") && m["path"].is_string() ? m["path"].get<std::string>() : "";
    const std::string pwhere = (dir / sub / "config.json").string();
    FERRUM_ASSIGN_OR_RETURN(json pc, read_json_file(pwhere));
    if (!pc.is_object()) return Error(pwhere + ": top level is not an object");
    // sentence-transformers >= 6 writes "pooling_mode": "mean" (or a list); older versions one
    // boolean per mode (pooling_mode_mean_tokens, pooling_mode_cls_token, ...).
    std::vector<std::string> modes;
    if (pc.contains("pooling_mode")) {
      const json& pm = pc["pooling_mode"];
      for (const json& v : pm.is_array() ? pm : json::array({pm}))
        modes.push_back(v.is_string() ? v.get<std::string>() : v.dump());
    } else {
      for (auto& [key, v] : pc.items())
        if (key == "pooling_mode_mean_tokens" && v == true) modes.push_back("mean");
        else if (key == "pooling_mode_cls_token" && v == true) modes.push_back("cls");
        else if (key.rfind("pooling_mode_", 0) == 0 && v == true) modes.push_back(key);
    }
    if (modes.size() != 1 || (modes[0] != "mean" && modes[0] != "cls"))
      return Error(pwhere + ": pooling must be exactly one mode, mean or cls");
    c->pooling = modes[0] == "cls" ? Pooling::Cls : Pooling::Mean;
  }
  return {};
}

}  // namespace

Result<ModelConfig> config_from_hf(const std::string& dir) {
  std::string path = (std::filesystem::path(dir) / "config.json").string();
  std::ifstream in(path);
  if (!in) return Error(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  FERRUM_ASSIGN_OR_RETURN(ModelConfig c, config_from_hf_json(ss.str(), path));
  if (std::filesystem::exists(std::filesystem::path(dir) / "modules.json"))
    FERRUM_TRY(read_sentence_transformers(dir, &c));
  return c;
}

Result<ModelConfig> config_from_gguf(const GgufFile& g) {
  const std::string& where = g.path();
  ModelConfig c;
  FERRUM_ASSIGN_OR_RETURN(auto arch, g.get_string("general.architecture"));
  if (!arch) return Error(where + ": missing metadata 'general.architecture'");
  c.arch = *arch;
  if (c.arch != "llama" && c.arch != "qwen2" && c.arch != "qwen3" && c.arch != "qwen3moe" && c.arch != "bert" &&
      c.arch != "gemma3")
    return Error(where + ": unknown architecture '" + c.arch + "' (metadata 'general.architecture')");
  const std::string p = c.arch + ".";
  auto req_int = [&](const std::string& key, int64_t* out) -> Status {
    auto v = g.get_int(key);
    if (!v.ok()) return v.status();
    if (!v.value()) return Error(where + ": missing metadata '" + key + "'");
    *out = *v.value();
    return {};
  };
  auto opt_int = [&](const std::string& key, int64_t* out) -> Status {
    auto v = g.get_int(key);
    if (!v.ok()) return v.status();
    if (v.value()) *out = *v.value();
    return {};
  };
  auto opt_float = [&](const std::string& key, double* out) -> Status {
    auto v = g.get_float(key);
    if (!v.ok()) return v.status();
    if (v.value()) *out = *v.value();
    return {};
  };
  FERRUM_ASSIGN_OR_RETURN(auto name, g.get_string("general.name"));
  if (name) c.name = *name;
  FERRUM_TRY(req_int(p + "embedding_length", &c.hidden));
  FERRUM_TRY(req_int(p + "block_count", &c.n_layers));
  FERRUM_TRY(req_int(p + "attention.head_count", &c.n_heads));
  c.n_kv_heads = c.n_heads;
  FERRUM_TRY(opt_int(p + "attention.head_count_kv", &c.n_kv_heads));
  FERRUM_TRY(opt_int(p + "feed_forward_length", &c.intermediate));
  FERRUM_TRY(opt_int(p + "context_length", &c.max_position));
  c.head_dim = c.n_heads > 0 ? c.hidden / c.n_heads : 0;
  FERRUM_TRY(opt_int(p + "attention.key_length", &c.head_dim));
  c.rope_dim = c.head_dim;
  FERRUM_TRY(opt_int(p + "rope.dimension_count", &c.rope_dim));
  FERRUM_TRY(opt_float(p + (c.arch == "bert" ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon"),
                       &c.norm_eps));
  FERRUM_TRY(opt_float(p + "rope.freq_base", &c.rope_theta));
  FERRUM_ASSIGN_OR_RETURN(auto scaling, g.get_string(p + "rope.scaling.type"));
  if (scaling && *scaling == "linear") {
    c.rope_scaling.type = "linear";
    FERRUM_TRY(opt_float(p + "rope.scaling.factor", &c.rope_scaling.factor));
  } else if (scaling && *scaling != "none") {
    return Error(where + ": rope scaling type '" + *scaling + "' is not supported (metadata '" + p +
                 "rope.scaling.type')");
  }
  if (c.arch == "gemma3") {
    // llama.cpp: every 6th layer is global, the others see a window; local RoPE base 10000.
    FERRUM_TRY(opt_int(p + "attention.sliding_window", &c.sliding_window));
    for (int64_t il = 0; il < c.n_layers; ++il) c.sliding_layers.push_back(il % 6 < 5);
    c.rope_theta_local = 10000.0;
    FERRUM_TRY(opt_float(p + "final_logit_softcapping", &c.final_logit_softcap));
  }
  FERRUM_TRY(opt_int(p + "expert_count", &c.n_experts));
  FERRUM_TRY(opt_int(p + "expert_used_count", &c.n_experts_used));
  FERRUM_TRY(opt_int(p + "expert_feed_forward_length", &c.moe_intermediate));
  FERRUM_ASSIGN_OR_RETURN(auto norm_topk, g.get_bool(p + "expert_weights_norm"));
  if (norm_topk) c.norm_topk_prob = *norm_topk;
  if (c.arch == "bert") {
    // llama.cpp's llama_pooling_type: 0 none, 1 mean, 2 cls (3 last and 4 rank are for decoders).
    int64_t pooling = 1;
    FERRUM_TRY(opt_int(p + "pooling_type", &pooling));
    if (pooling < 0 || pooling > 2)
      return Error(where + ": pooling type " + std::to_string(pooling) + " is not supported (metadata '" + p +
                   "pooling_type': 0 none, 1 mean, 2 cls)");
    c.pooling = pooling == 0 ? Pooling::None : pooling == 2 ? Pooling::Cls : Pooling::Mean;
    FERRUM_TRY(opt_int("tokenizer.ggml.token_type_count", &c.type_vocab_size));
    if (const GgufTensorInfo* tt = g.find_tensor("token_types.weight"); tt && tt->dims.size() == 2)
      c.type_vocab_size = tt->dims[1];
  }

  // Vocabulary: explicit key, else the tokenizer's token list, else the embedding table.
  FERRUM_TRY(opt_int(p + "vocab_size", &c.vocab_size));
  if (c.vocab_size == 0) {
    if (const GgufValue* toks = g.find("tokenizer.ggml.tokens"); toks && toks->type == GgufType::ARRAY)
      c.vocab_size = static_cast<int64_t>(toks->items.size());
    else if (const GgufTensorInfo* emb = g.find_tensor("token_embd.weight"); emb && emb->dims.size() == 2)
      c.vocab_size = emb->dims[1];
  }
  c.tie_embeddings = g.find_tensor("output.weight") == nullptr;
  c.attn_bias = g.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.qk_norm = g.find_tensor("blk.0.attn_q_norm.weight") != nullptr;
  FERRUM_ASSIGN_OR_RETURN(auto eos, g.get_int("tokenizer.ggml.eos_token_id"));
  if (eos) c.eos_ids.push_back(*eos);
  FERRUM_ASSIGN_OR_RETURN(auto eot, g.get_int("tokenizer.ggml.eot_token_id"));
  if (eot && (!eos || *eot != *eos)) c.eos_ids.push_back(*eot);
  FERRUM_ASSIGN_OR_RETURN(auto bos, g.get_int("tokenizer.ggml.bos_token_id"));
  if (bos) c.bos_id = *bos;
  FERRUM_TRY(c.validate(where));
  return c;
}

}  // namespace ferrum
