// The CPU backend: OpenMP threads (a persistent pool, no per-call thread creation), the fastest
// matmul kernel per weight type and the best row kernels for this CPU, all chosen at creation.
#pragma once

#include <array>
#include <vector>

#include "backend/cpu/vec_ops.h"
#include "backend/reference/reference_backend.h"
#include "quant/matmul.h"

namespace ferrum {

class CpuBackend : public HostMemoryBackend {
 public:
  explicit CpuBackend(int threads);
  std::string name() const override { return "cpu"; }
  std::string describe() const override;
  int threads() const { return threads_; }

  void embed(const Tensor& table, const int32_t* ids, Tensor out) override;
  void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor out) override;
  void add_rms_norm(Tensor x, const Tensor& y, const Tensor& w, float eps, Tensor out) override;
  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor out) override;
  void add(Tensor x, const Tensor& y) override;
  void add_bias(Tensor x, const Tensor& bias) override;
  void matmul(const Tensor& x, const Tensor& w, Tensor out) override;
  void rope(Tensor x, int64_t n_heads, const RopeParams& p, const int32_t* positions) override;
  void kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v, const int32_t* slots) override;
  void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const AttentionLayout& layout,
                 const AttentionParams& p, Tensor out) override;
  void silu_mul(const Tensor& gate, const Tensor& up, Tensor out) override;
  void gelu_tanh_mul(const Tensor& gate, const Tensor& up, Tensor out) override;
  void gelu_erf(Tensor x) override;
  void scale(Tensor x, float s) override;
  void gather_rows(const Tensor& x, const int32_t* rows, Tensor out) override;

 private:
  int threads_;
  const cpu::VecOps& ops_;
  std::array<const quant::MatmulKernel*, 64> kernels_{};  // by DType id
  std::vector<uint8_t> act_buf_;  // quantized activations; grows to the largest step, then stays
};

}  // namespace ferrum
