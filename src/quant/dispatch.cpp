// Runtime choice of the fastest kernel per weight type, made once from the CPU's features.
#include <array>

#include "quant/kernels.h"

namespace ferrum::quant {
namespace {

constexpr uint32_t kDTypeIds = 31;  // GGML type ids 0..30

struct CpuFeatures {
  bool avx512 = false;  // F, BW, VL, DQ, VNNI, BF16 + FMA/F16C: the set the *_avx512.cpp files use
  bool avx2 = false;    // AVX2, FMA, F16C
};

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
    __builtin_cpu_init();
    c.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
    c.avx512 = c.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16");
    return c;
  }();
  return f;
}

}  // namespace

std::vector<const MatmulKernel*> all_matmul_kernels(DType weight_type) {
  std::vector<const MatmulKernel*> out;
  const CpuFeatures& f = cpu_features();
  if (f.avx512) {
    for (auto family : {avx512_float_kernel, avx512_q8_0_kernel, avx512_k_kernel})
      if (const MatmulKernel* k = family(weight_type)) out.push_back(k);
  }
  if (f.avx2)
    if (const MatmulKernel* k = avx2_kernel(weight_type)) out.push_back(k);
  if (const MatmulKernel* k = reference_matmul_kernel(weight_type)) out.push_back(k);
  return out;
}

const MatmulKernel* best_matmul_kernel(DType weight_type) {
  static const std::array<const MatmulKernel*, kDTypeIds> best = [] {
    std::array<const MatmulKernel*, kDTypeIds> b{};
    for (uint32_t id = 0; id < kDTypeIds; ++id) {
      if (dtype_traits(id) == nullptr) continue;
      const std::vector<const MatmulKernel*> all = all_matmul_kernels(static_cast<DType>(id));
      if (!all.empty()) b[id] = all.front();
    }
    return b;
  }();
  const auto id = static_cast<uint32_t>(weight_type);
  return id < kDTypeIds ? best[id] : nullptr;
}

}  // namespace ferrum::quant
