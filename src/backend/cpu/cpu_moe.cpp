// Mixture-of-experts ops of the CPU backend. Pairs are grouped by expert (moe_route), so each
// active expert runs one product over all of its rows: its weights stream from memory once per
// step however many tokens chose it. The work is split into (expert, row range) tasks over all
// experts in one parallel region, which keeps every thread busy for a single decoded token (k
// experts) as for a long prompt (most experts).
#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.h"

namespace ferrum {

void CpuBackend::moe_route(const Tensor& logits, bool normalize, const MoeRouting& r) {
  const int64_t n_exp = logits.cols(), k = r.k;
  for_each_row(r.n_tokens, 16, [&](int64_t t) {
    const float* l = logits.row<float>(t);
    int32_t* id = r.ids + t * k;
    float* top = r.weights + t * k;  // holds the chosen logits until they become weights
    // Insertion into a sorted top-k list; an equal logit never displaces an earlier (lower) id.
    int64_t m = 0;
    for (int64_t e = 0; e < n_exp; ++e) {
      const float v = l[e];
      if (m == k && !(v > top[k - 1])) continue;
      int64_t j = m < k ? m++ : k - 1;
      for (; j > 0 && top[j - 1] < v; --j) {
        top[j] = top[j - 1];
        id[j] = id[j - 1];
      }
      top[j] = v;
      id[j] = static_cast<int32_t>(e);
    }
    const float mx = top[0];
    float sum = 0.0f;
    if (normalize) {
      for (int64_t j = 0; j < k; ++j) sum += std::exp(top[j] - mx);
    } else {
      for (int64_t e = 0; e < n_exp; ++e) sum += std::exp(l[e] - mx);
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < k; ++j) top[j] = std::exp(top[j] - mx) * inv;
  });
  // Counting sort of the pairs by expert (a few thousand pairs at most: not worth threads).
  const int64_t n_pairs = r.n_tokens * k;
  std::fill(r.offsets, r.offsets + r.n_experts + 1, 0);
  for (int64_t p = 0; p < n_pairs; ++p) ++r.offsets[r.ids[p] + 1];
  for (int64_t e = 0; e < r.n_experts; ++e) r.offsets[e + 1] += r.offsets[e];
  for (int64_t p = 0; p < n_pairs; ++p) {
    // offsets[e] serves as expert e's fill position, then is restored below.
    const int32_t i = r.offsets[r.ids[p]]++;
    r.order[i] = static_cast<int32_t>(p);
    r.rank[p] = i;
  }
  for (int64_t e = r.n_experts; e > 0; --e) r.offsets[e] = r.offsets[e - 1];
  r.offsets[0] = 0;
}

void CpuBackend::plan_expert_tasks(const MoeRouting& r, int64_t rows) {
  int64_t active = 0;
  for (int64_t e = 0; e < r.n_experts; ++e) active += r.offsets[e + 1] > r.offsets[e];
  // About eight tasks per thread for balance, each 16..128 rows (large enough to amortize a task).
  task_rows_ = std::clamp<int64_t>(rows * active / (8 * threads_) / 16 * 16, 16, 128);
  tasks_.clear();
  for (int64_t e = 0; e < r.n_experts; ++e) {
    if (r.offsets[e + 1] == r.offsets[e]) continue;
    for (int64_t r0 = 0; r0 < rows; r0 += task_rows_)
      tasks_.push_back({static_cast<int32_t>(e), static_cast<int32_t>(r0),
                        static_cast<int32_t>(std::min(task_rows_, rows - r0))});
  }
}

void CpuBackend::expert_gate_up_silu(const Tensor& x, const ExpertMatrices& gate, const ExpertMatrices& up,
                                     const MoeRouting& r, Tensor out) {
  const quant::MatmulKernel* kg = kernels_[static_cast<size_t>(gate.type)];
  const quant::MatmulKernel* ku = kernels_[static_cast<size_t>(up.type)];
  const int64_t n_pairs = r.n_tokens * r.k, kdim = gate.cols;
  size_t sg = 0, su = 0;
  const auto* ag = static_cast<const uint8_t*>(prepare_act(*kg, x, r.order, r.k, n_pairs, act_buf_, &sg));
  const auto* au = ag;
  su = sg;
  if (!quant::same_act_format(*kg, *ku))
    au = static_cast<const uint8_t*>(prepare_act(*ku, x, r.order, r.k, n_pairs, act_buf2_, &su));
  plan_expert_tasks(r, gate.rows);
  // Up-projection results of one task: at most one row per token (a token picks an expert once).
  const size_t per_thread = static_cast<size_t>(r.n_tokens * task_rows_);
  if (task_buf_.size() < per_thread * static_cast<size_t>(threads_)) task_buf_.resize(per_thread * threads_);
  const int64_t ldo = static_cast<int64_t>(out.row_stride() / sizeof(float));
  const int64_t n_tasks = static_cast<int64_t>(tasks_.size());
  pool_.parallel_for(n_tasks, [&](int64_t ti, int thread) {
    const ExpertTask task = tasks_[static_cast<size_t>(ti)];
    const int64_t first = r.offsets[task.e], count = r.offsets[task.e + 1] - first;
    float* g = out.row<float>(first) + task.r0;
    float* u = task_buf_.data() + per_thread * static_cast<size_t>(thread);
    kg->gemm(static_cast<const uint8_t*>(gate.mats[task.e]) + task.r0 * gate.row_bytes, gate.row_bytes,
             ag + first * sg, sg, kdim, count, g, ldo, task.n);
    ku->gemm(static_cast<const uint8_t*>(up.mats[task.e]) + task.r0 * up.row_bytes, up.row_bytes,
             au + first * su, su, kdim, count, u, task.n, task.n);
    for (int64_t i = 0; i < count; ++i) ops_.silu_mul(g + i * ldo, u + i * task.n, g + i * ldo, task.n);
  });
}

void CpuBackend::expert_matmul(const Tensor& x, const ExpertMatrices& w, const MoeRouting& r, Tensor out) {
  const quant::MatmulKernel* kern = kernels_[static_cast<size_t>(w.type)];
  size_t sa = 0;
  const auto* act =
      static_cast<const uint8_t*>(prepare_act(*kern, x, nullptr, 1, r.n_tokens * r.k, act_buf_, &sa));
  plan_expert_tasks(r, w.rows);
  const int64_t ldo = static_cast<int64_t>(out.row_stride() / sizeof(float));
  const int64_t n_tasks = static_cast<int64_t>(tasks_.size());
  pool_.parallel_for(n_tasks, [&](int64_t ti, int) {
    const ExpertTask task = tasks_[static_cast<size_t>(ti)];
    const int64_t first = r.offsets[task.e], count = r.offsets[task.e + 1] - first;
    kern->gemm(static_cast<const uint8_t*>(w.mats[task.e]) + task.r0 * w.row_bytes, w.row_bytes,
               act + first * sa, sa, w.cols, count, out.row<float>(first) + task.r0, ldo, task.n);
  });
}

void CpuBackend::moe_combine(const Tensor& y, const MoeRouting& r, Tensor out) {
  const int64_t n = y.cols();
  for_each_row(r.n_tokens, 4, [&](int64_t t) {
    float* o = out.row<float>(t);
    std::fill(o, o + n, 0.0f);
    for (int64_t j = 0; j < r.k; ++j)
      ops_.axpy(r.weights[t * r.k + j], y.row<float>(r.rank[t * r.k + j]), o, n);
  });
}

}  // namespace ferrum
