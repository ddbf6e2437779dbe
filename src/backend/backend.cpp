#include "backend/backend.h"

#include <charconv>
#include <cmath>
#include <limits>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/vec_ops.h"
#include "backend/reference/reference_backend.h"

#ifdef FERRUM_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace ferrum {

namespace cpu {
const VecOps& best_vec_ops() {
  static const VecOps& ops = []() -> const VecOps& {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return vec_ops_avx512();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return vec_ops_avx2();
    return vec_ops_generic();
  }();
  return ops;
}
}  // namespace cpu

int32_t argmax_row(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(v[i]) || v[i] == std::numeric_limits<float>::infinity()) return -1;
    if (v[i] > v[best]) best = i;
  }
  return n > 0 && v[best] != -std::numeric_limits<float>::infinity() ? static_cast<int32_t>(best) : -1;
}

void Backend::rope_and_cache(const RopeAndCache& a) {
  const int64_t n = a.q.rows(), hd = a.rope.head_dim;
  if (!a.q_norm.empty()) {
    // Per-head norm: [n, heads * hd] viewed as [n * heads, hd] (rows are contiguous).
    const Tensor qh = Tensor::f32(a.q.row<float>(0), n * a.n_heads, hd);
    const Tensor kh = Tensor::f32(a.k.row<float>(0), n * a.n_kv_heads, hd);
    rms_norm(qh, a.q_norm, a.eps, qh);
    rms_norm(kh, a.k_norm, a.eps, kh);
  }
  rope(a.q, a.n_heads, a.rope, a.positions);
  rope(a.k, a.n_kv_heads, a.rope, a.positions);
  kv_write(a.k_cache, a.v_cache, a.k, a.v, a.slots);
}

Result<std::unique_ptr<Backend>> create_backend(const std::string& name, const BackendOptions& options) {
  const int threads = options.threads;
  if (name == "cpu") return std::unique_ptr<Backend>(new CpuBackend(threads));
  if (name == "reference") return std::unique_ptr<Backend>(new ReferenceBackend());
  const bool cuda = name == "cuda" || name.rfind("cuda:", 0) == 0;
#ifdef FERRUM_HAVE_CUDA
  if (name == "auto")
    return cuda_device_count() > 0 ? create_cuda_backend(0, options.exact_gemm)
                                   : create_backend("cpu", threads);
  if (cuda) {
    int device = 0;
    if (name != "cuda") {
      const std::string n = name.substr(5);
      const auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), device);
      if (n.empty() || ec != std::errc() || p != n.data() + n.size() || device < 0)
        return Error("backend '" + name + "': expected cuda:N with N a device number");
    }
    return create_cuda_backend(device, options.exact_gemm);
  }
#else
  if (name == "auto") return create_backend("cpu", threads);
  if (cuda)
    return Error("backend '" + name +
                 "': this ferrum was built without CUDA (configure with -DFERRUM_CUDA=ON)");
#endif
  return Error("unknown backend '" + name + "' (auto, cpu, cuda, reference)");
}

}  // namespace ferrum
