// Matrix products of stored-format weights with float32 activations, one kernel per weight type.
//
//   y[t * ldy + r] = sum_k W[r, k] * x[t, k]   for rows r in [0, n_rows), tokens t in [0, n_tokens)
//
// W is row-major in its stored format (GGUF block layout), row r at w + r * w_row_bytes.
// A kernel may want the activations in another format first (llama.cpp rounds them to Q8_0 / Q8_K
// blocks for integer dots): `act_type` says which rounding, and `quantize_act` converts one row of k
// floats into act_row_bytes(kern, k) bytes (a kernel-internal layout, see act.h; rows 64-byte aligned
// are fastest). The caller (the CPU backend) converts all token rows once, then splits the weight rows
// across threads and calls `gemm` on each slice: kernels never start threads themselves.
// Kernels with act_type F32 take the float rows as they are (quantize_act is null).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace ferrum::quant {

struct MatmulKernel {
  const char* name = nullptr;  // e.g. "q4_K x q8_K avx512vnni", for `ferrum info` and bench output
  DType weight_type = DType::F32;
  DType act_type = DType::F32;  // F32 means the activations are used as they are
  // Converts one activation row of k floats to act_type (unused when act_type is F32).
  void (*quantize_act)(const float* x, void* qx, int64_t k) = nullptr;
  // Computes the slice described above for n_rows rows starting at w (already offset to the slice)
  // and writes y[t * ldy + r] with r relative to the slice start. k is a multiple of the weight
  // type's block size (any k for F32/F16/BF16).
  void (*gemm)(const uint8_t* w, size_t w_row_bytes, const void* act, size_t act_row_bytes, int64_t k,
               int64_t n_tokens, float* y, int64_t ldy, int64_t n_rows) = nullptr;
};

// Whether two kernels read the same activation rows (then one conversion serves both).
inline bool same_act_format(const MatmulKernel& a, const MatmulKernel& b) {
  return a.act_type == b.act_type && a.quantize_act == b.quantize_act;
}

// Bytes of one activation row of k elements in the kernel's activation format.
size_t act_row_bytes(const MatmulKernel& kern, int64_t k);
// The float values a converted activation row stands for (tests compare kernels against them).
void dequantize_act(const MatmulKernel& kern, const void* qx, float* x, int64_t k);

// The fastest kernel for this weight type on this CPU, chosen once (CPU features are read on first use).
// Returns nullptr for a type with no kernel.
const MatmulKernel* best_matmul_kernel(DType weight_type);
// The plain scalar reference for the same product (dequantize the row, float dot): the contract.
const MatmulKernel* reference_matmul_kernel(DType weight_type);
// Every kernel this CPU can run for the type, best first (tests and benchmarks cover them all).
std::vector<const MatmulKernel*> all_matmul_kernels(DType weight_type);

// Whether dequantize_row supports `type` (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K,
// Q8_K).
bool can_dequantize(DType type);
// Scalar dequantization of n elements (n a multiple of the block size).
void dequantize_row(DType type, const void* src, float* dst, int64_t n);

}  // namespace ferrum::quant
