#include <cmath>

#include "backend/cpu/vec_ops.h"

namespace ferrum::cpu {
namespace {
#include "backend/cpu/vec_ops_impl.h"
}  // namespace
FERRUM_DEFINE_VEC_OPS(vec_ops_generic, "generic", silu_mul_impl, attend_generic, gelu_erf_impl)
}  // namespace ferrum::cpu
