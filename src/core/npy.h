// NumPy .npy (format 1.0) reading and writing of little-endian float32/int32 arrays.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ferrum/status.h"

namespace ferrum {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // converted to float32 whatever the stored dtype (<f4, <f8, <i4, <i8)
};

Status write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);
Result<NpyArray> read_npy(const std::string& path);

}  // namespace ferrum
