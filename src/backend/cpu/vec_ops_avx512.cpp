#include <cmath>

#include "backend/cpu/vec_ops.h"

namespace ferrum::cpu {
namespace {
#include "backend/cpu/vec_ops_impl.h"
}  // namespace
FERRUM_DEFINE_VEC_OPS(vec_ops_avx512, "avx512", silu_mul_avx512, attend_avx512, gelu_erf_avx512)
}  // namespace ferrum::cpu
