#include "backend/reference/reference_backend.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "quant/matmul.h"

namespace ferrum {

void ReferenceBackend::embed(const Tensor& table, const int32_t* ids, Tensor out) {
  for (int64_t i = 0; i < out.rows(); ++i)
    quant::dequantize_row(table.type, table.row<uint8_t>(ids[i]), out.row<float>(i), table.cols());
}

void ReferenceBackend::rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor out) {
  const int64_t n = x.cols();
  for (int64_t r = 0; r < x.rows(); ++r) {
    const float* xr = x.row<float>(r);
    float* o = out.row<float>(r);
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(xr[i]) * xr[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / double(n) + eps));
    const float* wr = w.row<float>(0);
    for (int64_t i = 0; i < n; ++i) o[i] = xr[i] * inv * wr[i];
  }
}

void ReferenceBackend::add_rms_norm(Tensor x, const Tensor& y, const Tensor& w, float eps, Tensor out) {
  add(x, y);
  rms_norm(x, w, eps, out);
}

void ReferenceBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor out) {
  const int64_t n = x.cols();
  for (int64_t r = 0; r < x.rows(); ++r) {
    const float* xr = x.row<float>(r);
    float* o = out.row<float>(r);
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; ++i) mean += xr[i];
    mean /= double(n);
    for (int64_t i = 0; i < n; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    var /= double(n);
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t i = 0; i < n; ++i)
      o[i] = static_cast<float>((xr[i] - mean) * inv * w.row<float>(0)[i] + b.row<float>(0)[i]);
  }
}

void ReferenceBackend::add(Tensor x, const Tensor& y) {
  for (int64_t r = 0; r < x.rows(); ++r)
    for (int64_t i = 0; i < x.cols(); ++i) x.row<float>(r)[i] += y.row<float>(r)[i];
}

void ReferenceBackend::add_bias(Tensor x, const Tensor& bias) {
  for (int64_t r = 0; r < x.rows(); ++r)
    for (int64_t i = 0; i < x.cols(); ++i) x.row<float>(r)[i] += bias.row<float>(0)[i];
}

void ReferenceBackend::matmul(const Tensor& x, const Tensor& w, Tensor out) {
  const quant::MatmulKernel* k = quant::reference_matmul_kernel(w.type);
  k->gemm(static_cast<const uint8_t*>(w.data), w.row_stride(), x.data, x.row_stride(), w.cols(), x.rows(),
          out.row<float>(0), static_cast<int64_t>(out.row_stride() / sizeof(float)), w.rows());
}

void ReferenceBackend::rope(Tensor x, int64_t n_heads, const RopeParams& p, const int32_t* positions) {
  const int64_t half = p.rope_dim / 2;
  for (int64_t t = 0; t < x.rows(); ++t) {
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x.row<float>(t) + h * p.head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const double angle = double(positions[t]) * double(p.inv_freq[i]);
        const double c = std::cos(angle), s = std::sin(angle);
        // Neox rotates (i, i + half); adjacent rotates (2i, 2i + 1).
        const int64_t a = p.style == RopeStyle::Neox ? i : 2 * i;
        const int64_t b = p.style == RopeStyle::Neox ? i + half : 2 * i + 1;
        const double x0 = v[a], x1 = v[b];
        v[a] = static_cast<float>(x0 * c - x1 * s);
        v[b] = static_cast<float>(x0 * s + x1 * c);
      }
    }
  }
}

void ReferenceBackend::kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                                const int32_t* slots) {
  for (int64_t t = 0; t < k.rows(); ++t) {
    for (int64_t i = 0; i < k.cols(); ++i) k_cache.row<float>(slots[t])[i] = k.row<float>(t)[i];
    for (int64_t i = 0; i < v.cols(); ++i) v_cache.row<float>(slots[t])[i] = v.row<float>(t)[i];
  }
}

void ReferenceBackend::attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                 const AttentionLayout& L, const AttentionParams& p, Tensor out) {
  const int64_t group = p.n_heads / p.n_kv_heads;
  std::vector<double> scores;
  for (int64_t t = 0; t < L.n_tokens; ++t) {
    const int32_t* table = L.block_tables + L.seq_index[t] * L.max_blocks;
    const int64_t end = L.kv_end[t];
    const int64_t first = p.window > 0 ? std::max<int64_t>(0, end - p.window) : 0;
    for (int64_t h = 0; h < p.n_heads; ++h) {
      const float* qh = q.row<float>(t) + h * p.head_dim;
      const int64_t kvh = h / group;
      scores.assign(static_cast<size_t>(end - first), 0.0);
      double mx = -INFINITY;
      for (int64_t j = first; j < end; ++j) {
        const int64_t slot = int64_t(table[j / L.block_size]) * L.block_size + j % L.block_size;
        const float* kh = k_cache.row<float>(slot) + kvh * p.head_dim;
        double s = 0;
        for (int64_t d = 0; d < p.head_dim; ++d) s += double(qh[d]) * kh[d];
        s *= p.scale;
        scores[j - first] = s;
        mx = std::max(mx, s);
      }
      double sum = 0;
      for (double& s : scores) sum += (s = std::exp(s - mx));
      float* o = out.row<float>(t) + h * p.head_dim;
      for (int64_t d = 0; d < p.head_dim; ++d) {
        double acc = 0;
        for (int64_t j = first; j < end; ++j) {
          const int64_t slot = int64_t(table[j / L.block_size]) * L.block_size + j % L.block_size;
          acc += scores[j - first] * v_cache.row<float>(slot)[kvh * p.head_dim + d];
        }
        o[d] = static_cast<float>(acc / sum);
      }
    }
  }
}

void ReferenceBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor out) {
  for (int64_t r = 0; r < gate.rows(); ++r)
    for (int64_t i = 0; i < gate.cols(); ++i) {
      const double g = gate.row<float>(r)[i];
      out.row<float>(r)[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up.row<float>(r)[i]);
    }
}

void ReferenceBackend::gelu_tanh_mul(const Tensor& gate, const Tensor& up, Tensor out) {
  for (int64_t r = 0; r < gate.rows(); ++r)
    for (int64_t i = 0; i < gate.cols(); ++i) {
      const double g = gate.row<float>(r)[i];
      const double gl = 0.5 * g * (1.0 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)));
      out.row<float>(r)[i] = static_cast<float>(gl * up.row<float>(r)[i]);
    }
}

void ReferenceBackend::gelu_erf(Tensor x) {
  for (int64_t r = 0; r < x.rows(); ++r)
    for (int64_t i = 0; i < x.cols(); ++i) {
      const double v = x.row<float>(r)[i];
      x.row<float>(r)[i] = static_cast<float>(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))));
    }
}

void ReferenceBackend::scale(Tensor x, float s) {
  for (int64_t r = 0; r < x.rows(); ++r)
    for (int64_t i = 0; i < x.cols(); ++i) x.row<float>(r)[i] *= s;
}

void ReferenceBackend::softcap(Tensor x, float cap) {
  for (int64_t r = 0; r < x.rows(); ++r)
    for (int64_t i = 0; i < x.cols(); ++i)
      x.row<float>(r)[i] = static_cast<float>(cap * std::tanh(double(x.row<float>(r)[i]) / cap));
}

void ReferenceBackend::gather_rows(const Tensor& x, const int32_t* rows, Tensor out) {
  for (int64_t r = 0; r < out.rows(); ++r)
    for (int64_t i = 0; i < x.cols(); ++i) out.row<float>(r)[i] = x.row<float>(rows[r])[i];
}

void ReferenceBackend::argmax_rows(const Tensor& x, int32_t* out) {
  for (int64_t r = 0; r < x.rows(); ++r) {
    out[r] = argmax_row(x.row<float>(r), x.cols());
  }
}

void ReferenceBackend::moe_route(const Tensor& logits, bool normalize, const MoeRouting& r) {
  const int64_t n_exp = logits.cols(), k = r.k;
  std::vector<int32_t> by_rank(static_cast<size_t>(n_exp));
  for (int64_t t = 0; t < r.n_tokens; ++t) {
    const float* l = logits.row<float>(t);
    std::iota(by_rank.begin(), by_rank.end(), 0);
    // Experts are chosen on the logits (softmax keeps their order), so rounding cannot reorder them.
    std::stable_sort(by_rank.begin(), by_rank.end(), [l](int32_t a, int32_t b) { return l[a] > l[b]; });
    const double mx = l[by_rank[0]];
    double all = 0, chosen = 0;
    for (int64_t e = 0; e < n_exp; ++e) all += std::exp(double(l[e]) - mx);
    for (int64_t j = 0; j < k; ++j) chosen += std::exp(double(l[by_rank[j]]) - mx);
    for (int64_t j = 0; j < k; ++j) {
      r.ids[t * k + j] = by_rank[j];
      r.weights[t * k + j] =
          static_cast<float>(std::exp(double(l[by_rank[j]]) - mx) / (normalize ? chosen : all));
    }
  }
  const int64_t n_pairs = r.n_tokens * k;
  for (int64_t e = 0; e <= r.n_experts; ++e) r.offsets[e] = 0;
  for (int64_t p = 0; p < n_pairs; ++p) ++r.offsets[r.ids[p] + 1];
  for (int64_t e = 0; e < r.n_experts; ++e) r.offsets[e + 1] += r.offsets[e];
  std::vector<int32_t> fill(r.offsets, r.offsets + r.n_experts);
  for (int64_t p = 0; p < n_pairs; ++p) {
    const int32_t i = fill[static_cast<size_t>(r.ids[p])]++;
    r.order[i] = static_cast<int32_t>(p);
    r.rank[p] = i;
  }
}

void ReferenceBackend::expert_gate_up_silu(const Tensor& x, const ExpertMatrices& gate,
                                           const ExpertMatrices& up, const MoeRouting& r, Tensor out) {
  std::vector<float> g(static_cast<size_t>(gate.rows)), u(static_cast<size_t>(up.rows));
  for (int64_t i = 0; i < r.n_tokens * r.k; ++i) {
    const int64_t p = r.order[i], e = r.ids[p];
    const Tensor xt = x.row_slice(p / r.k, 1);
    matmul(xt, gate.matrix(e), Tensor::f32(g.data(), 1, gate.rows));
    matmul(xt, up.matrix(e), Tensor::f32(u.data(), 1, up.rows));
    silu_mul(Tensor::f32(g.data(), 1, gate.rows), Tensor::f32(u.data(), 1, up.rows), out.row_slice(i, 1));
  }
}

void ReferenceBackend::expert_matmul(const Tensor& x, const ExpertMatrices& w, const MoeRouting& r,
                                     Tensor out) {
  for (int64_t i = 0; i < r.n_tokens * r.k; ++i)
    matmul(x.row_slice(i, 1), w.matrix(r.ids[r.order[i]]), out.row_slice(i, 1));
}

void ReferenceBackend::moe_combine(const Tensor& y, const MoeRouting& r, Tensor out) {
  for (int64_t t = 0; t < r.n_tokens; ++t)
    for (int64_t c = 0; c < y.cols(); ++c) {
      double acc = 0;
      for (int64_t j = 0; j < r.k; ++j)
        acc += double(r.weights[t * r.k + j]) * y.row<float>(r.rank[t * r.k + j])[c];
      out.row<float>(t)[c] = static_cast<float>(acc);
    }
}

}  // namespace ferrum
