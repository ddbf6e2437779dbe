#include "models/moe_layers.h"

#include <fmt/format.h>

namespace ferrum {

namespace {

Result<ExpertMatrices> load_experts(WeightStore& w, int64_t il, const char* proj, int64_t n_experts,
                                    int64_t rows, int64_t cols) {
  ExpertMatrices m;
  m.n_experts = n_experts;
  m.rows = rows;
  m.cols = cols;
  std::vector<const void*> mats(static_cast<size_t>(n_experts));
  if (w.is_gguf()) {
    FERRUM_ASSIGN_OR_RETURN(
        Tensor t, w.matrix(fmt::format("blk.{}.ffn_{}_exps.weight", il, proj), rows, cols, n_experts));
    for (int64_t e = 0; e < n_experts; ++e) mats[static_cast<size_t>(e)] = t.matrix(e).data;
    m.type = t.type;
  } else {
    for (int64_t e = 0; e < n_experts; ++e) {
      const std::string name = fmt::format("blk.{}.ffn_{}_exps.{}.weight", il, proj, e);
      FERRUM_ASSIGN_OR_RETURN(Tensor t, w.matrix(name, rows, cols));
      if (e > 0 && t.type != m.type)
        return Error(fmt::format("{}: tensor '{}' has type {} but expert 0 of the layer has {}", w.path(),
                                 name, dtype_name(t.type), dtype_name(m.type)));
      m.type = t.type;
      mats[static_cast<size_t>(e)] = t.data;
    }
  }
  m.row_bytes = row_bytes(m.type, cols);
  FERRUM_ASSIGN_OR_RETURN(void* table, w.own_bytes(mats.data(), mats.size() * sizeof(void*)));
  m.mats = static_cast<const void* const*>(table);
  return m;
}

}  // namespace

Result<MoeWeights> load_moe(WeightStore& w, const ModelConfig& c, int64_t il) {
  const int64_t E = c.n_experts, I = c.moe_intermediate, H = c.hidden;
  if (E <= 0 || c.n_experts_used <= 0 || I <= 0)
    return Error(
        fmt::format("{}: layer {} is a mixture of experts but the config gives {} experts, {} per token, "
                    "expert size {}",
                    w.path(), il, E, c.n_experts_used, I));
  MoeWeights m;
  FERRUM_ASSIGN_OR_RETURN(m.router, w.matrix(fmt::format("blk.{}.ffn_gate_inp.weight", il), E, H));
  FERRUM_ASSIGN_OR_RETURN(m.gate, load_experts(w, il, "gate", E, I, H));
  FERRUM_ASSIGN_OR_RETURN(m.up, load_experts(w, il, "up", E, I, H));
  FERRUM_ASSIGN_OR_RETURN(m.down, load_experts(w, il, "down", E, H, I));
  return m;
}

size_t moe_scratch_floats(const ModelConfig& c, int64_t n) {
  const size_t pairs = static_cast<size_t>(n * c.n_experts_used);
  // Each arena allocation is rounded up to 16 floats: 8 allocations.
  return static_cast<size_t>(n * c.n_experts) + 4 * pairs + static_cast<size_t>(c.n_experts + 1) +
         pairs * static_cast<size_t>(c.moe_intermediate + c.hidden) + 8 * 16;
}

MoeScratch moe_scratch(ScratchArena& s, const ModelConfig& c, int64_t n) {
  const int64_t k = c.n_experts_used, pairs = n * k;
  // Index arrays live in the float arena (same size and alignment as int32).
  auto ints = [&](int64_t count) { return reinterpret_cast<int32_t*>(s.f32(1, count).data); };
  MoeScratch m;
  m.logits = s.f32(n, c.n_experts);
  m.routing.n_tokens = n;
  m.routing.n_experts = c.n_experts;
  m.routing.k = k;
  m.routing.ids = ints(pairs);
  m.routing.weights = s.f32(1, pairs).row<float>(0);
  m.routing.offsets = ints(c.n_experts + 1);
  m.routing.order = ints(pairs);
  m.routing.rank = ints(pairs);
  m.act = s.f32(pairs, c.moe_intermediate);
  m.out = s.f32(pairs, c.hidden);
  return m;
}

void moe_forward(Backend& b, Profiler& profiler, const MoeWeights& w, bool normalize, const Tensor& h,
                 MoeScratch& s, Tensor out) {
  {
    Profiler::Scope ps(profiler, Stage::MoeRoute);
    b.matmul(h, w.router, s.logits);
    b.moe_route(s.logits, normalize, s.routing);
  }
  {
    Profiler::Scope ps(profiler, Stage::MoeGateUp);
    b.expert_gate_up_silu(h, w.gate, w.up, s.routing, s.act);
  }
  {
    Profiler::Scope ps(profiler, Stage::MoeDown);
    b.expert_matmul(s.act, w.down, s.routing, s.out);
  }
  Profiler::Scope ps(profiler, Stage::MoeCombine);
  b.moe_combine(s.out, s.routing, out);
}

}  // namespace ferrum
