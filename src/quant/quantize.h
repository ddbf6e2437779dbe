// Float32 -> stored-format conversion of weight rows (for `ferrum quantize`), following llama.cpp's
// reference quantizers so that files match llama-quantize without an importance matrix byte for byte.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace ferrum::quant {

// Whether quantize_row supports `type` (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K).
bool can_quantize(DType type);

// Converts n floats (n a multiple of the block size) to `type`, writing row_bytes(type, n) bytes.
void quantize_row(DType type, const float* x, void* y, int64_t n);

}  // namespace ferrum::quant
