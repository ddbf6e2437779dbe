#include <map>

#include "models/model.h"

namespace ferrum {

Result<const Architecture*> find_architecture(const std::string& arch) {
  // One line per architecture.
  static const std::map<std::string, Architecture> kBuilders = {
      {"llama", {build_llama_family, llama_family_names}},
      {"qwen2", {build_llama_family, llama_family_names}},
      {"qwen3", {build_llama_family, llama_family_names}},
      {"qwen3moe", {build_qwen3_moe, qwen3_moe_names}},
      {"bert", {build_bert, bert_names}},
      {"gemma3", {build_gemma3, gemma3_names}},
  };
  auto it = kBuilders.find(arch);
  if (it != kBuilders.end()) return &it->second;
  std::string known;
  for (auto& [name, b] : kBuilders) known += (known.empty() ? "" : ", ") + name;
  return Error("architecture '" + arch + "' is not supported (supported: " + known + ")");
}

}  // namespace ferrum
