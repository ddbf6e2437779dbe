// Element types, numbered as GGML numbers them so GGUF type ids map directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ferrum {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
};

struct DTypeTraits {
  const char* name;
  int block_elems;   // elements per block (1 for plain types)
  int block_bytes;   // bytes per block
  bool supported;    // whether ferrum can compute with it
};

// Returns nullptr for ids GGML does not define (or that ferrum does not know).
const DTypeTraits* dtype_traits(uint32_t id);
inline const DTypeTraits& traits(DType t) { return *dtype_traits(static_cast<uint32_t>(t)); }
inline const char* dtype_name(DType t) { return traits(t).name; }
// Name for any id, also unknown ones ("type 42"), for error messages.
std::string dtype_id_name(uint32_t id);

// Bytes of one row of n elements; n must be a multiple of the block size.
inline size_t row_bytes(DType t, int64_t n) {
  const auto& tr = traits(t);
  return static_cast<size_t>(n / tr.block_elems) * static_cast<size_t>(tr.block_bytes);
}

bool dtype_is_quantized(DType t);

}  // namespace ferrum
