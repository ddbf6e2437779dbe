// Writing GGUF files: `ferrum quantize` (and plain conversion of Hugging Face folders) from a
// GGUF file or an HF folder, with llama-quantize's per-tensor type choices for the _M mixes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/dtype.h"
#include "ferrum/status.h"

namespace ferrum {

// A target file type as llama-quantize names it: F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q5_K_M, Q6_K.
struct FileType {
  std::string name;
  DType base;        // type of most 2-D weights
  bool mix;          // the _M rules (more bits for some attn_v / ffn_down layers) apply
  uint32_t gguf_id;  // general.file_type
};
Result<FileType> parse_file_type(const std::string& name);

struct TensorTypeContext {
  int64_t n_layers = 0;
  int64_t n_experts = 0;
  bool tied_output = false;  // token_embd doubles as the output head
};

// llama-quantize's choice for one tensor (llama_tensor_get_type, without an importance matrix):
// 1-D tensors and routers stay F32; the output head gets Q6_K unless the file is Q8_0 or float;
// Q4_K_M / Q5_K_M give Q6_K to attn_v and ffn_down of the layers use_more_bits() selects; K-quants
// fall back when a row is not a multiple of 256 (Q4_K -> Q5_0, Q5_K/Q6_K -> Q8_0).
DType choose_tensor_type(const FileType& ft, const std::string& name, const std::vector<int64_t>& dims,
                         const TensorTypeContext& ctx);

// Reads `in` (a .gguf of F32/F16/BF16 weights or an HF folder) and writes `out` as `type`.
Status quantize_model(const std::string& in, const std::string& out, const std::string& type,
                      const std::function<void(size_t done, size_t total)>& progress);

}  // namespace ferrum
