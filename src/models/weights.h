// Weights of a loaded model, named in one internal schema (GGUF's names: `token_embd.weight`,
// `blk.N.attn_q.weight`, ...). A GGUF file is used as it is; a Hugging Face folder is read through
// the architecture's name map. Matrices stay in their stored type, in the mapping (CPU) or in one
// upload per tensor (GPU); small 1-D tensors (norms, biases) are converted to float32 once.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "ferrum/model_config.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"

namespace ferrum {

// Pairs of tensor-name patterns, internal (GGUF) and Hugging Face, where "{}" stands for a layer
// number and "{e}" for an expert number, e.g. {"blk.{}.attn_q.weight",
// "model.layers.{}.self_attn.q_proj.weight"}.
struct NamePair {
  const char* gguf;
  const char* hf;
};

class NameMap {
 public:
  NameMap() = default;
  // `unused_hf`: prefixes of Hugging Face tensors the architecture never reads (e.g. BERT's pooler),
  // which conversion drops instead of rejecting.
  explicit NameMap(std::vector<NamePair> pairs, std::vector<std::string> unused_hf = {})
      : pairs_(std::move(pairs)), unused_hf_(std::move(unused_hf)) {}
  // "" when the name matches no pattern.
  std::string to_hf(const std::string& gguf_name) const { return translate(gguf_name, true); }
  std::string to_gguf(const std::string& hf_name) const { return translate(hf_name, false); }
  bool unused(const std::string& hf_name) const;

 private:
  std::string translate(const std::string& name, bool to_hf) const;
  std::vector<NamePair> pairs_;
  std::vector<std::string> unused_hf_;
};

class WeightStore {
 public:
  // `path`: a .gguf file or a folder with config.json + safetensors; `access` as in MappedFile.
  static Result<std::unique_ptr<WeightStore>> open(const std::string& path,
                                                   FileAccess access = FileAccess::Map);
  ~WeightStore();

  const ModelConfig& config() const { return config_; }
  ModelConfig& mutable_config() { return config_; }
  bool is_gguf() const { return gguf_ != nullptr; }
  const GgufFile* gguf() const { return gguf_.get(); }
  const std::string& path() const { return path_; }

  void bind(Backend* backend, const NameMap* hf_names) {
    backend_ = backend;
    hf_names_ = hf_names;
  }
  bool has(const std::string& name) const;
  // A matrix [rows, cols] (GGML dims {cols, rows}; optionally a stack of `mats`) in its stored
  // type, ready for the backend. Shape mismatches and unsupported types are errors naming the tensor.
  Result<Tensor> matrix(const std::string& name, int64_t rows, int64_t cols, int64_t mats = 1);
  // A 1-D float32 vector of n elements (converted once if stored as F16/BF16).
  Result<Tensor> vector(const std::string& name, int64_t n);
  // Uploads a float32 vector computed at load (e.g. RoPE frequencies); the store owns it.
  Result<Tensor> own_vector(const std::vector<float>& host);
  // Copies bytes computed at load (e.g. a table of expert pointers) to backend memory the store owns.
  Result<void*> own_bytes(const void* host, size_t bytes);
  // Reads every page of the mapped weights now (so the first steps do not stall on disk),
  // reporting bytes done / total as it goes.
  void prefetch(const std::function<void(size_t, size_t)>& progress) const;
  // Bytes of all tensors in the file, as stored.
  size_t tensor_bytes() const;
  // For backends that upload the weights (GPUs): report bytes uploaded / total bytes of the file's
  // tensors as matrices are uploaded (call before the model is built); finish_uploads reports the end.
  void report_uploads(std::function<void(size_t, size_t)> progress);
  void finish_uploads();
  // Total bytes of all tensors and a per-type breakdown, for `ferrum info`.
  struct TensorSummary {
    std::string name;
    DType type;
    std::vector<int64_t> dims;  // GGML order
    size_t bytes;
  };
  std::vector<TensorSummary> summary() const;
  // The raw safetensors of an HF folder by HF name (for conversion); empty for GGUF.
  const std::map<std::string, SafetensorsTensor>& hf_tensors() const;

 private:
  struct Raw {
    DType type;
    std::vector<int64_t> dims;  // GGML order
    const uint8_t* data;
    size_t nbytes;
  };
  Result<Raw> find_raw(const std::string& name) const;

  std::string path_;
  ModelConfig config_;
  std::unique_ptr<GgufFile> gguf_;
  std::unique_ptr<SafetensorsSet> st_;
  Backend* backend_ = nullptr;
  const NameMap* hf_names_ = nullptr;
  std::vector<void*> owned_;  // converted vectors and uploads made through the backend
  std::function<void(size_t, size_t)> upload_progress_;
  size_t uploaded_ = 0, upload_total_ = 0, upload_reported_ = 0;
};

}  // namespace ferrum
