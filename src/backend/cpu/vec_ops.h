// Row-level float kernels of the CPU backend, compiled once per instruction set
// (vec_ops_{generic,avx2,avx512}.cpp include vec_ops_impl.h) and chosen when the backend is created.
#pragma once

#include <cstdint>

#include "backend/cpu/attention_kernel.h"

namespace ferrum::cpu {

struct VecOps {
  const char* isa;
  void (*axpy)(float a, const float* x, float* y, int64_t n);  // y += a * x
  void (*scale)(float* y, float a, int64_t n);
  // out = x * inv_rms(x) * w; returns nothing, reads x once for the sum of squares.
  void (*rms_norm)(const float* x, const float* w, float eps, float* out, int64_t n);
  void (*add)(float* x, const float* y, int64_t n);
  void (*silu_mul)(const float* g, const float* u, float* out, int64_t n);
  void (*attend)(const AttendTask& task);
  void (*gelu_erf)(float* x, int64_t n);  // x = x * (1 + erf(x / sqrt 2)) / 2
};

// Hand-written AVX-512 row kernels (the others are vec_ops_impl.h compiled per instruction set).
void gelu_erf_avx512(float* x, int64_t n);
void silu_mul_avx512(const float* g, const float* u, float* out, int64_t n);

const VecOps& vec_ops_generic();
const VecOps& vec_ops_avx2();
const VecOps& vec_ops_avx512();
// Best for this CPU (read once).
const VecOps& best_vec_ops();

}  // namespace ferrum::cpu
