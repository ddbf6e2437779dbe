// Scalar reference kernels: dequantize a weight row to float32 and take a plain float dot product.
#include <vector>

#include "core/half.h"
#include "quant/matmul.h"

namespace ferrum::quant {

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
  switch (type) {
    case DType::F32: {
      const float* s = static_cast<const float*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = s[i];
      return;
    }
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(s[i]);
      return;
    }
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(s[i]);
      return;
    }
    default:
      break;
  }
}

namespace {

template <DType T>
void reference_gemm(const uint8_t* w, size_t w_row_bytes, const void* act, size_t act_row_bytes, int64_t k,
                    int64_t n_tokens, float* y, int64_t ldy, int64_t n_rows) {
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t r = 0; r < n_rows; ++r) {
    dequantize_row(T, w + r * w_row_bytes, row.data(), k);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* x = reinterpret_cast<const float*>(static_cast<const uint8_t*>(act) + t * act_row_bytes);
      double s = 0;
      for (int64_t i = 0; i < k; ++i) s += static_cast<double>(row[i]) * x[i];
      y[t * ldy + r] = static_cast<float>(s);
    }
  }
}

template <DType T>
constexpr MatmulKernel make_reference(const char* name) {
  MatmulKernel k;
  k.name = name;
  k.weight_type = T;
  k.act_type = DType::F32;
  k.gemm = reference_gemm<T>;
  return k;
}

constexpr MatmulKernel kRefF32 = make_reference<DType::F32>("f32 reference");
constexpr MatmulKernel kRefF16 = make_reference<DType::F16>("f16 reference");
constexpr MatmulKernel kRefBF16 = make_reference<DType::BF16>("bf16 reference");

}  // namespace

size_t act_row_bytes(const MatmulKernel& kern, int64_t k) { return row_bytes(kern.act_type, k); }

const MatmulKernel* reference_matmul_kernel(DType weight_type) {
  switch (weight_type) {
    case DType::F32: return &kRefF32;
    case DType::F16: return &kRefF16;
    case DType::BF16: return &kRefBF16;
    default: return nullptr;
  }
}

const MatmulKernel* best_matmul_kernel(DType weight_type) { return reference_matmul_kernel(weight_type); }

}  // namespace ferrum::quant
