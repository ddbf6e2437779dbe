// The CPU backend: a persistent thread pool (thread_pool.h; no per-call thread creation), the fastest
// matmul kernel per weight type and the best row kernels for this CPU, all chosen at creation.
#pragma once

#include <algorithm>
#include <array>
#include <vector>

#include "backend/cpu/thread_pool.h"
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
  // Products whose kernels read the same activation format share one conversion of x and one
  // parallel pass (one wait for the pool instead of one per product).
  void matmul_group(const Tensor& x, std::span<const MatmulOut> outs) override;
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

 private:
  // Activation rows in the kernel's format: row i is x[order[i] / per_row] when `order` is given
  // (the token row of a grouped pair), else x[i]. Returns x itself when the kernel takes float rows
  // as they are and nothing is gathered.
  const void* prepare_act(const quant::MatmulKernel& kern, const Tensor& x, const int32_t* order,
                          int64_t per_row, int64_t n_rows, std::vector<uint8_t>& buf, size_t* stride);
  // One task of a grouped expert product: weight rows [r0, r0 + n) of expert e against its pairs.
  struct ExpertTask {
    int32_t e, r0, n;
  };
  // The products of matmul and matmul_group, whose kernels all read one activation format: x is
  // converted once and every product's row blocks share one parallel pass.
  static constexpr size_t kMaxProducts = 8;
  void run_products(const Tensor& x, std::span<const MatmulOut> outs);
  // Rows per task of a dense product: a multiple of 16, about two tasks per thread.
  int64_t row_block(int64_t n_rows) const {
    return std::max<int64_t>(16, (n_rows + 2 * threads_ - 1) / (2 * threads_) + 15) / 16 * 16;
  }
  // Splits every active expert's `rows` weight rows into tasks. Tasks start at multiples of 16 rows,
  // so the vector lanes of the row kernels line up alike however many tasks the step has.
  void plan_expert_tasks(const MoeRouting& r, int64_t rows);

  // fn(i) for i in [0, n): on the caller alone when n <= serial_max, else over the pool in about
  // four contiguous chunks per thread (boundaries depend on n and the thread count only).
  template <class F>
  void for_each_row(int64_t n, int64_t serial_max, const F& fn) {
    if (n <= serial_max || threads_ == 1) {
      for (int64_t i = 0; i < n; ++i) fn(i);
      return;
    }
    const int64_t chunks = std::min<int64_t>(n, 4 * threads_);
    pool_.parallel_for(chunks, [&](int64_t c, int) {
      for (int64_t i = c * n / chunks, end = (c + 1) * n / chunks; i < end; ++i) fn(i);
    });
  }

  int threads_;
  cpu::ThreadPool pool_;
  const cpu::VecOps& ops_;
  std::array<const quant::MatmulKernel*, 64> kernels_{};  // by DType id
  // Buffers that grow to the largest step, then stay: quantized activations, the up-projection
  // results of each thread's current task, the task list.
  std::vector<uint8_t> act_buf_, act_buf2_;
  std::vector<float> task_buf_;
  std::vector<ExpertTask> tasks_;
  struct AttnTile {
    int64_t t0, t1;  // consecutive tokens of one sequence
  };
  std::vector<AttnTile> attn_tiles_;
  int64_t task_rows_ = 0;  // the row count of the current plan's tasks (the last of an expert may be shorter)
};

}  // namespace ferrum
