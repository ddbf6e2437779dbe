#include "backend/backend.h"

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/vec_ops.h"
#include "backend/reference/reference_backend.h"

namespace ferrum {

namespace cpu {
const VecOps& best_vec_ops() {
  static const VecOps& ops = [] () -> const VecOps& {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return vec_ops_avx512();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return vec_ops_avx2();
    return vec_ops_generic();
  }();
  return ops;
}
}  // namespace cpu

Result<std::unique_ptr<Backend>> create_backend(const std::string& name, int threads) {
  if (name == "cpu" || name == "auto") return std::unique_ptr<Backend>(new CpuBackend(threads));
  if (name == "reference") return std::unique_ptr<Backend>(new ReferenceBackend());
  return Error("unknown backend '" + name + "' (cpu, reference)");
}

}  // namespace ferrum
