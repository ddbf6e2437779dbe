#include <map>

#include "models/model.h"

namespace ferrum {

Result<ModelBuilder> find_model_builder(const std::string& arch) {
  // One line per architecture.
  static const std::map<std::string, ModelBuilder> kBuilders = {
      {"llama", build_llama_family},
      {"qwen2", build_llama_family},
      {"qwen3", build_llama_family},
  };
  auto it = kBuilders.find(arch);
  if (it != kBuilders.end()) return it->second;
  std::string known;
  for (auto& [name, b] : kBuilders) known += (known.empty() ? "" : ", ") + name;
  return Error("architecture '" + arch + "' is not supported (supported: " + known + ")");
}

}  // namespace ferrum
