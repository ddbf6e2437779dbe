// safetensors reader: memory-mapped files, header JSON, F32/F16/BF16 (and I32/I64) tensors as views.
// A folder with model.safetensors.index.json (sharded) is read as one set of tensors.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "ferrum/status.h"

namespace ferrum {

struct SafetensorsTensor {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> shape;  // row-major as stored: shape.back() is the contiguous length
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::string file;  // which file holds it, for messages
};

class SafetensorsSet {
 public:
  // `path` is a .safetensors file or a folder (model.safetensors, or the sharded index).
  static Result<std::unique_ptr<SafetensorsSet>> open(const std::string& path,
                                                       FileAccess access = FileAccess::Map);
  // Parses one mapping (tests, fuzzer) and adds its tensors.
  Status add_file(std::shared_ptr<MappedFile> file);

  const SafetensorsTensor* find(const std::string& name) const;
  const std::map<std::string, SafetensorsTensor>& tensors() const { return tensors_; }

 private:
  std::vector<std::shared_ptr<MappedFile>> files_;
  std::map<std::string, SafetensorsTensor> tensors_;
};

}  // namespace ferrum
