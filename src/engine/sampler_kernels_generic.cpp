#include "engine/sampler_simd.h"

namespace ferrum::sampler_simd {
namespace {
constexpr int kWidth = 4;
#include "engine/sampler_kernels_impl.h"
}  // namespace
FERRUM_DEFINE_SAMPLER_KERNELS(kernels_generic, "generic")
}  // namespace ferrum::sampler_simd
