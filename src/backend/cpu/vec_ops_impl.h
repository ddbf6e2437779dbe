// (The including file includes <cmath> first.)
// Bodies of the VecOps kernels; included by one .cpp per instruction set, inside a namespace
// that names the set. Written as plain loops with `omp simd` so the compiler vectorizes them for
// the flags of the including file; the reduction order depends only on n, never on batch shape.
#pragma once

inline void axpy_impl(float a, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

inline void scale_impl(float* y, float a, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] *= a;
}

inline void rms_norm_impl(const float* x, const float* w, float eps, float* out, int64_t n) {
  float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv * w[i];
}

inline void add_impl(float* x, const float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

inline void silu_mul_impl(const float* g, const float* u, float* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

inline void gelu_erf_impl(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}

#define FERRUM_DEFINE_VEC_OPS(fn_name, isa_name, silu_mul_fn, attend_fn, gelu_erf_fn) \
  const VecOps& fn_name() {                                                           \
    static const VecOps ops{isa_name, axpy_impl,   scale_impl, rms_norm_impl,         \
                            add_impl, silu_mul_fn, attend_fn,  gelu_erf_fn};          \
    return ops;                                                                       \
  }
