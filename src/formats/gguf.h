// GGUF v2/v3 reader: the file is memory-mapped, metadata is parsed into values,
// tensor data is returned as pointers into the mapping (never copied).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "ferrum/status.h"

namespace ferrum {

enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_type_name(GgufType t);

struct GgufValue {
  GgufType type = GgufType::U8;
  // Exactly one of these is meaningful, according to `type`.
  uint64_t u = 0;            // unsigned integers and bool
  int64_t i = 0;             // signed integers
  double f = 0;              // floats
  std::string_view str;      // STRING (points into the mapping)
  GgufType elem_type = GgufType::U8;  // ARRAY element type
  std::vector<GgufValue> items;       // ARRAY elements (nested arrays allowed)

  bool is_integer() const;
  bool is_float() const { return type == GgufType::F32 || type == GgufType::F64; }
  // Numeric value of any integer/float/bool type.
  double as_double() const;
  int64_t as_int() const;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // GGML order: dims[0] is the contiguous (row) length
  DType type = DType::F32;
  uint64_t offset = 0;        // relative to the data section
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t n_elements() const;
};

class GgufFile {
 public:
  static Result<std::unique_ptr<GgufFile>> open(const std::string& path, FileAccess access = FileAccess::Map);
  // Parses a mapping made elsewhere (tests, the fuzzer).
  static Result<std::unique_ptr<GgufFile>> parse(std::shared_ptr<MappedFile> file);

  uint32_t version() const { return version_; }
  const std::string& path() const { return file_->path(); }
  const std::shared_ptr<MappedFile>& mapping() const { return file_; }
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  size_t alignment() const { return alignment_; }

  const GgufValue* find(const std::string& key) const;
  const GgufTensorInfo* find_tensor(const std::string& name) const;

  // Typed getters: an absent key gives nullopt; a present key of the wrong type is an error.
  Result<std::optional<std::string>> get_string(const std::string& key) const;
  Result<std::optional<int64_t>> get_int(const std::string& key) const;
  Result<std::optional<double>> get_float(const std::string& key) const;
  Result<std::optional<bool>> get_bool(const std::string& key) const;

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace ferrum
