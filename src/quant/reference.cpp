// Scalar reference kernels: dequantize a weight row to float32 and take a plain float dot product
// (accumulated in double, so the reference adds no rounding of its own beyond the final store).
#include <vector>

#include "quant/matmul.h"

namespace ferrum::quant {
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
constexpr MatmulKernel kRefQ4_0 = make_reference<DType::Q4_0>("q4_0 reference");
constexpr MatmulKernel kRefQ4_1 = make_reference<DType::Q4_1>("q4_1 reference");
constexpr MatmulKernel kRefQ5_0 = make_reference<DType::Q5_0>("q5_0 reference");
constexpr MatmulKernel kRefQ8_0 = make_reference<DType::Q8_0>("q8_0 reference");
constexpr MatmulKernel kRefQ4_K = make_reference<DType::Q4_K>("q4_K reference");
constexpr MatmulKernel kRefQ5_K = make_reference<DType::Q5_K>("q5_K reference");
constexpr MatmulKernel kRefQ6_K = make_reference<DType::Q6_K>("q6_K reference");

}  // namespace

const MatmulKernel* reference_matmul_kernel(DType weight_type) {
  switch (weight_type) {
    case DType::F32:
      return &kRefF32;
    case DType::F16:
      return &kRefF16;
    case DType::BF16:
      return &kRefBF16;
    case DType::Q4_0:
      return &kRefQ4_0;
    case DType::Q4_1:
      return &kRefQ4_1;
    case DType::Q5_0:
      return &kRefQ5_0;
    case DType::Q8_0:
      return &kRefQ8_0;
    case DType::Q4_K:
      return &kRefQ4_K;
    case DType::Q5_K:
      return &kRefQ5_K;
    case DType::Q6_K:
      return &kRefQ6_K;
    default:
      return nullptr;
  }
}

}  // namespace ferrum::quant
