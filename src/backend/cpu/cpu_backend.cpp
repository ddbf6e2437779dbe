#include "backend/cpu/cpu_backend.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace ferrum {

namespace {
const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0, DType::Q4_0,
                              DType::Q4_1, DType::Q5_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

}  // namespace

CpuBackend::CpuBackend(int threads)
    : threads_(threads > 0 ? threads : static_cast<int>(std::max<long>(1, sysconf(_SC_NPROCESSORS_ONLN)))),
      pool_(threads_),
      ops_(cpu::best_vec_ops()) {
  for (DType t : kWeightTypes) kernels_[static_cast<size_t>(t)] = quant::best_matmul_kernel(t);
}

std::string CpuBackend::describe() const {
  std::string s = "cpu (" + std::to_string(threads_) + " threads, " + ops_.isa + "); matmul kernels:";
  for (DType t : kWeightTypes)
    if (const auto* k = kernels_[static_cast<size_t>(t)]) s += std::string(" [") + k->name + "]";
  return s;
}

void CpuBackend::embed(const Tensor& table, const int32_t* ids, Tensor out) {
  for_each_row(out.rows(), 1, [&](int64_t i) {
    quant::dequantize_row(table.type, table.row<uint8_t>(ids[i]), out.row<float>(i), table.cols());
  });
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor out) {
  const float* wr = w.row<float>(0);
  for_each_row(x.rows(), 4,
               [&](int64_t r) { ops_.rms_norm(x.row<float>(r), wr, eps, out.row<float>(r), x.cols()); });
}

void CpuBackend::add_rms_norm(Tensor x, const Tensor& y, const Tensor& w, float eps, Tensor out) {
  const float* wr = w.row<float>(0);
  for_each_row(x.rows(), 4, [&](int64_t r) {
    ops_.add(x.row<float>(r), y.row<float>(r), x.cols());
    ops_.rms_norm(x.row<float>(r), wr, eps, out.row<float>(r), x.cols());
  });
}

void CpuBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor out) {
  const int64_t n = x.cols();
  const float* wr = w.row<float>(0);
  const float* br = b.row<float>(0);
  for_each_row(x.rows(), 4, [&](int64_t r) {
    const float* xr = x.row<float>(r);
    float* o = out.row<float>(r);
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; ++i) mean += xr[i];
    mean /= double(n);
    for (int64_t i = 0; i < n; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    const float inv = static_cast<float>(1.0 / std::sqrt(var / double(n) + eps));
    const float m = static_cast<float>(mean);
    for (int64_t i = 0; i < n; ++i) o[i] = (xr[i] - m) * inv * wr[i] + br[i];
  });
}

void CpuBackend::add(Tensor x, const Tensor& y) {
  for_each_row(x.rows(), 4, [&](int64_t r) { ops_.add(x.row<float>(r), y.row<float>(r), x.cols()); });
}

void CpuBackend::add_bias(Tensor x, const Tensor& bias) {
  const float* b = bias.row<float>(0);
  for (int64_t r = 0; r < x.rows(); ++r) ops_.add(x.row<float>(r), b, x.cols());
}

void CpuBackend::matmul(const Tensor& x, const Tensor& w, Tensor out) {
  const MatmulOut product{&w, out};
  run_products(x, {&product, 1});
}

void CpuBackend::matmul_group(const Tensor& x, std::span<const MatmulOut> outs) {
  if (outs.empty()) return;
  const quant::MatmulKernel& first = *kernels_[static_cast<size_t>(outs.front().w->type)];
  const bool one_format = std::all_of(outs.begin(), outs.end(), [&](const MatmulOut& m) {
    return quant::same_act_format(*kernels_[static_cast<size_t>(m.w->type)], first);
  });
  if (!one_format || outs.size() > kMaxProducts) return Backend::matmul_group(x, outs);
  run_products(x, outs);
}

void CpuBackend::run_products(const Tensor& x, std::span<const MatmulOut> outs) {
  const quant::MatmulKernel& first = *kernels_[static_cast<size_t>(outs.front().w->type)];
  const int64_t k = x.cols(), n_tokens = x.rows();
  size_t act_stride = 0;
  const void* act = prepare_act(first, x, nullptr, 1, n_tokens, act_buf_, &act_stride);
  // Task b of product i is row block b - start[i] of that product.
  std::array<int64_t, kMaxProducts + 1> start{};
  for (size_t i = 0; i < outs.size(); ++i) {
    const int64_t rows = outs[i].w->rows(), block = row_block(rows);
    start[i + 1] = start[i] + (rows + block - 1) / block;
  }
  pool_.parallel_for(start[outs.size()], [&](int64_t task, int) {
    size_t i = 0;
    while (task >= start[i + 1]) ++i;
    const Tensor& w = *outs[i].w;
    const Tensor& out = outs[i].out;
    const int64_t block = row_block(w.rows()), r0 = (task - start[i]) * block,
                  n = std::min(block, w.rows() - r0);
    const size_t wstride = w.row_stride();
    kernels_[static_cast<size_t>(w.type)]->gemm(static_cast<const uint8_t*>(w.data) + r0 * wstride, wstride,
                                                act, act_stride, k, n_tokens, out.row<float>(0) + r0,
                                                static_cast<int64_t>(out.row_stride() / sizeof(float)), n);
  });
}

const void* CpuBackend::prepare_act(const quant::MatmulKernel& kern, const Tensor& x, const int32_t* order,
                                    int64_t per_row, int64_t n_rows, std::vector<uint8_t>& buf,
                                    size_t* stride) {
  const int64_t k = x.cols();
  const bool as_is = kern.act_type == DType::F32;
  if (as_is && order == nullptr) {
    *stride = x.row_stride();
    return x.data;
  }
  // Gathered float rows keep 64-byte alignment like the quantized ones.
  *stride = as_is ? (static_cast<size_t>(k) * sizeof(float) + 63) / 64 * 64 : quant::act_row_bytes(kern, k);
  const size_t need = *stride * static_cast<size_t>(n_rows);
  if (buf.size() < need) buf.resize(need);
  uint8_t* a = buf.data();
  const size_t s = *stride;
  for_each_row(n_rows, 1, [&](int64_t i) {
    const float* src = x.row<float>(order ? order[i] / per_row : i);
    if (as_is)
      std::memcpy(a + i * s, src, static_cast<size_t>(k) * sizeof(float));
    else
      kern.quantize_act(src, a + i * s, k);
  });
  return a;
}

void CpuBackend::rope(Tensor x, int64_t n_heads, const RopeParams& p, const int32_t* positions) {
  const int64_t half = p.rope_dim / 2;
  for_each_row(x.rows(), 1, [&](int64_t t) {
    // cos/sin once per token, shared by all heads (computed in double like the reference).
    float cs[512], sn[512];
    for (int64_t i = 0; i < half; ++i) {
      const double a = double(positions[t]) * double(p.inv_freq[i]);
      cs[i] = static_cast<float>(std::cos(a));
      sn[i] = static_cast<float>(std::sin(a));
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x.row<float>(t) + h * p.head_dim;
      if (p.style == RopeStyle::Neox) {
        for (int64_t i = 0; i < half; ++i) {
          const float x0 = v[i], x1 = v[i + half];
          v[i] = x0 * cs[i] - x1 * sn[i];
          v[i + half] = x0 * sn[i] + x1 * cs[i];
        }
      } else {
        for (int64_t i = 0; i < half; ++i) {
          const float x0 = v[2 * i], x1 = v[2 * i + 1];
          v[2 * i] = x0 * cs[i] - x1 * sn[i];
          v[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
        }
      }
    }
  });
}

void CpuBackend::kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                          const int32_t* slots) {
  for (int64_t t = 0; t < k.rows(); ++t) {
    std::memcpy(k_cache.row<float>(slots[t]), k.row<float>(t), static_cast<size_t>(k.cols()) * sizeof(float));
    std::memcpy(v_cache.row<float>(slots[t]), v.row<float>(t), static_cast<size_t>(v.cols()) * sizeof(float));
  }
}

void CpuBackend::attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                           const AttentionLayout& L, const AttentionParams& p, Tensor out) {
  const int64_t group = p.n_heads / p.n_kv_heads;
  // Tiles: up to `tile_tokens` consecutive tokens of one sequence times the query heads of one KV
  // head (rows <= kMaxTaskRows). When that gives fewer than two tasks per thread (decoding one
  // sequence), the heads of a group are split too.
  const int64_t tile_tokens = std::max<int64_t>(1, std::min<int64_t>(16, cpu::kMaxTaskRows / group));
  attn_tiles_.clear();
  for (int64_t t0 = 0; t0 < L.n_tokens;) {
    int64_t t1 = t0 + 1;
    while (t1 < L.n_tokens && t1 - t0 < tile_tokens && L.seq_index[t1] == L.seq_index[t0]) ++t1;
    attn_tiles_.push_back({t0, t1});
    t0 = t1;
  }
  const int64_t per_kv_head = static_cast<int64_t>(attn_tiles_.size()) * p.n_kv_heads;
  const int64_t min_split = (group * tile_tokens + cpu::kMaxTaskRows - 1) / cpu::kMaxTaskRows;
  const int64_t want_split = (2 * threads_ + per_kv_head - 1) / per_kv_head;
  const int64_t head_split = std::clamp<int64_t>(std::max(min_split, want_split), 1, group);
  const int64_t heads_per_task = (group + head_split - 1) / head_split;
  const int64_t tasks_per_tile = p.n_kv_heads * head_split;
  const int64_t q_stride = static_cast<int64_t>(q.row_stride() / sizeof(float));
  const int64_t out_stride = static_cast<int64_t>(out.row_stride() / sizeof(float));
  const int64_t kv_stride = static_cast<int64_t>(k_cache.row_stride() / sizeof(float));
  pool_.parallel_for(static_cast<int64_t>(attn_tiles_.size()) * tasks_per_tile, [&](int64_t task, int) {
    const AttnTile& tile = attn_tiles_[static_cast<size_t>(task / tasks_per_tile)];
    const int64_t kvh = task % tasks_per_tile / head_split, part = task % head_split;
    const int64_t h0 = kvh * group + part * heads_per_task;
    const int64_t h1 = std::min((kvh + 1) * group, h0 + heads_per_task);
    if (h0 >= h1) return;
    cpu::AttendTask a;
    a.q = q.row<float>(0);
    a.q_stride = q_stride;
    a.out = out.row<float>(0);
    a.out_stride = out_stride;
    a.k_cache = k_cache.row<float>(0);
    a.v_cache = v_cache.row<float>(0);
    a.kv_stride = kv_stride;
    a.table = L.block_tables + L.seq_index[tile.t0] * L.max_blocks;
    a.block_size = L.block_size;
    a.kv_end = L.kv_end;
    a.t_begin = tile.t0;
    a.t_end = tile.t1;
    a.h_begin = h0;
    a.h_end = h1;
    a.head_dim = p.head_dim;
    a.kv_offset = kvh * p.head_dim;
    a.window = p.window;
    a.scale = p.scale;
    ops_.attend(a);
  });
}

void CpuBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor out) {
  for_each_row(gate.rows(), 1, [&](int64_t r) {
    ops_.silu_mul(gate.row<float>(r), up.row<float>(r), out.row<float>(r), gate.cols());
  });
}

void CpuBackend::gelu_tanh_mul(const Tensor& gate, const Tensor& up, Tensor out) {
  for_each_row(gate.rows(), 1, [&](int64_t r) {
    for (int64_t i = 0; i < gate.cols(); ++i) {
      const float g = gate.row<float>(r)[i];
      const float gl = 0.5f * g * (1.0f + std::tanh(0.7978845608f * (g + 0.044715f * g * g * g)));
      out.row<float>(r)[i] = gl * up.row<float>(r)[i];
    }
  });
}

void CpuBackend::gelu_erf(Tensor x) {
  for_each_row(x.rows(), 1, [&](int64_t r) { ops_.gelu_erf(x.row<float>(r), x.cols()); });
}

void CpuBackend::scale(Tensor x, float s) {
  for (int64_t r = 0; r < x.rows(); ++r) ops_.scale(x.row<float>(r), s, x.cols());
}

void CpuBackend::softcap(Tensor x, float cap) {
  for_each_row(x.rows(), 1, [&](int64_t r) {
    for (int64_t i = 0; i < x.cols(); ++i) x.row<float>(r)[i] = cap * std::tanh(x.row<float>(r)[i] / cap);
  });
}

void CpuBackend::gather_rows(const Tensor& x, const int32_t* rows, Tensor out) {
  for (int64_t r = 0; r < out.rows(); ++r)
    std::memcpy(out.row<float>(r), x.row<float>(rows[r]), static_cast<size_t>(x.cols()) * sizeof(float));
}

void CpuBackend::argmax_rows(const Tensor& x, int32_t* out) {
  for_each_row(x.rows(), 1, [&](int64_t r) { out[r] = argmax_row(x.row<float>(r), x.cols()); });
}

}  // namespace ferrum
