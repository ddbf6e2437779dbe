// Plain scalar version of every op: single-threaded, double accumulation, no intrinsics.
// It defines what each op computes; the op-contract test runs every backend against it.
#pragma once

#include "backend/host_memory.h"

namespace ferrum {

class ReferenceBackend : public HostMemoryBackend {
 public:
  std::string name() const override { return "reference"; }
  std::string describe() const override { return "reference (scalar, 1 thread)"; }

  void embed(const Tensor& table, const int32_t* ids, Tensor out) override;
  void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor out) override;
  void add_rms_norm(Tensor x, const Tensor& y, const Tensor& w, float eps, Tensor out) override;
  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor out) override;
  void add(Tensor x, const Tensor& y) override;
  void add_bias(Tensor x, const Tensor& bias) override;
  void matmul(const Tensor& x, const Tensor& w, Tensor out) override;
  void rope(Tensor x, int64_t n_heads, const RopeParams& p, const int32_t* positions) override;
  void kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                const int32_t* slots) override;
  void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const AttentionLayout& layout,
                 const AttentionParams& p, Tensor out) override;
  void silu_mul(const Tensor& gate, const Tensor& up, Tensor out) override;
  void gelu_tanh_mul(const Tensor& gate, const Tensor& up, Tensor out) override;
  void gelu_erf(Tensor x) override;
  void scale(Tensor x, float s) override;
  void softcap(Tensor x, float cap) override;
  void gather_rows(const Tensor& x, const int32_t* rows, Tensor out) override;
  void argmax_rows(const Tensor& x, int32_t* out) override;
  void moe_route(const Tensor& logits, bool normalize, const MoeRouting& r) override;
  void expert_gate_up_silu(const Tensor& x, const ExpertMatrices& gate, const ExpertMatrices& up,
                           const MoeRouting& r, Tensor out) override;
  void expert_matmul(const Tensor& x, const ExpertMatrices& w, const MoeRouting& r, Tensor out) override;
  void moe_combine(const Tensor& y, const MoeRouting& r, Tensor out) override;
};

}  // namespace ferrum
