// One model configuration struct, filled from a Hugging Face config.json or from GGUF metadata.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ferrum/status.h"

namespace ferrum {

class GgufFile;

enum class RopeStyle { Neox, Adjacent };  // rotate-half (HF/Qwen) vs adjacent pairs (GGUF llama)

// How an encoder's token states become one embedding: none (every token's state), the mean over the
// sequence, or the first ([CLS]) token's state.
enum class Pooling { None, Mean, Cls };

struct RopeScaling {
  std::string type = "default";  // default | linear | llama3
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

struct ModelConfig {
  std::string arch;        // registry key: llama, qwen2, qwen3, qwen3moe, bert, gemma3
  std::string name;
  int64_t vocab_size = 0;
  int64_t hidden = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate = 0;
  int64_t max_position = 2048;
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  int64_t rope_dim = 0;        // rotated dimensions per head (== head_dim unless partial)
  RopeScaling rope_scaling;
  bool tie_embeddings = false;
  bool attn_bias = false;      // q/k/v biases (Qwen2)
  bool qk_norm = false;        // per-head RMSNorm of q and k (Qwen3)
  // Gemma 3: sliding-window layers with their own RoPE base, attention scale, logit soft-capping.
  std::vector<bool> sliding_layers;  // per layer: sees only the last `sliding_window` keys
  int64_t sliding_window = 0;
  double rope_theta_local = 0;       // RoPE base of sliding layers (0: rope_theta)
  double attn_scale = 0;             // 0: 1/sqrt(head_dim)
  double final_logit_softcap = 0;    // 0: none
  // Mixture of experts (Qwen3-MoE).
  int64_t n_experts = 0;
  int64_t n_experts_used = 0;
  int64_t moe_intermediate = 0;
  bool norm_topk_prob = true;
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;
  // Encoders (BERT).
  int64_t type_vocab_size = 0;
  // From a sentence-transformers folder (modules.json, 1_Pooling/config.json, a Normalize module),
  // else GGUF `<arch>.pooling_type`; GGUF has no key for the L2 normalization.
  Pooling pooling = Pooling::Mean;
  bool normalize = false;
  // Token ids from the config (tokenizer metadata may add more).
  std::vector<int64_t> eos_ids;
  int64_t bos_id = -1;

  Status validate(const std::string& where) const;
};

// `dir` holds config.json. Accepts transformers 4.x and 5.x spellings.
Result<ModelConfig> config_from_hf(const std::string& dir);
Result<ModelConfig> config_from_hf_json(const std::string& json_text, const std::string& where);
Result<ModelConfig> config_from_gguf(const GgufFile& g);

}  // namespace ferrum
