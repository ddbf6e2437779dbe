// GGUF v3 writer: metadata values and tensors, 32-byte aligned data, written in one pass.
// Tensor bytes come from a callback so large files are produced tensor by tensor.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "ferrum/status.h"
#include "formats/gguf.h"

namespace ferrum {

class GgufWriter {
 public:
  void set_string(const std::string& key, const std::string& v);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  // Copies a value read from another GGUF file (any type, arrays included).
  void set_value(const std::string& key, const GgufValue& v);

  // Produces the tensor's bytes (exactly row_bytes(type, dims[0]) * rows) into `out`.
  using Producer = std::function<Status(std::vector<uint8_t>& out)>;
  void add_tensor(const std::string& name, DType type, std::vector<int64_t> dims, Producer produce);

  // Writes the file; `progress(done, total)` is called after each tensor.
  Status write(const std::string& path, const std::function<void(size_t, size_t)>& progress = nullptr) const;

 private:
  struct Meta {
    std::string key;
    std::vector<uint8_t> encoded;  // type id + value, already serialized
  };
  struct TensorEntry {
    std::string name;
    DType type;
    std::vector<int64_t> dims;
    size_t nbytes;
    Producer produce;
  };
  void put(const std::string& key, std::vector<uint8_t> encoded);
  std::vector<Meta> meta_;
  std::vector<TensorEntry> tensors_;
};

}  // namespace ferrum
