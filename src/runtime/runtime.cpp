#include "ferrum/runtime.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "backend/backend.h"
#include "core/profiler.h"
#include "kv/kv_cache.h"
#include "models/model.h"
#include "models/weights.h"
#include "runtime/kv_sizing.h"

namespace ferrum {

// Members are destroyed in reverse order: the model and weights release their device memory
// through the backend, so the backend is declared first.
struct Runtime::Impl {
  RuntimeConfig cfg;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<WeightStore> weights;
  Profiler profiler;
  std::unique_ptr<Model> model;
  std::unique_ptr<KvCache> kv;
  int64_t max_tokens = 0, max_out = 0, max_step_seqs = 0;
  int64_t width = 0;  // floats per output row: vocab (decoders) or hidden (encoders)
  // Device buffers made at load and reused by every step.
  void* scratch_mem = nullptr;
  size_t scratch_floats = 0;
  void* index_mem = nullptr;  // tokens, slots, positions, seq_index, out_rows, block tables (also of rings)
  void* logits_mem = nullptr;
  int32_t* greedy_mem = nullptr;  // step_greedy's ids, max_out of them, after the index arrays
  // Host staging, sized at load.
  std::vector<int32_t> h_tokens, h_slots, h_pos, h_end, h_seq, h_out, h_tables;
  std::vector<int32_t> h_wslots, h_wtables;  // ring rows / ring block tables of windowed layers
  std::vector<float> h_logits;
  std::vector<int32_t> h_greedy;
  std::vector<float> all_rows;  // all-logits prefill results gathered across chunks
  std::vector<Runtime::Work> work_buf;
  // Decode steps recorded per batch size (backends that record; see Runtime::step).
  bool record_steps = false;
  struct Recorded {
    bool warmed = false;
    std::unique_ptr<StepGraph> graph;
  };
  std::map<int64_t, Recorded> recorded;

  ~Impl() {
    recorded.clear();
    if (backend) {
      backend->free(scratch_mem);
      backend->free(index_mem);
      backend->free(logits_mem);
    }
  }
};

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Runtime::~Runtime() = default;

Result<std::unique_ptr<Runtime>> Runtime::load(const std::string& path, const RuntimeConfig& cfg,
                                               const std::function<void(size_t, size_t)>& progress) {
  auto im = std::make_unique<Impl>();
  im->cfg = cfg;
  im->profiler.set_enabled(cfg.profile);
  FERRUM_ASSIGN_OR_RETURN(
      im->backend,
      create_backend(cfg.backend, BackendOptions{.threads = cfg.threads, .exact_gemm = cfg.exact_gemm}));
  // GPU backends upload the weights; a host copy would only hold memory.
  const bool copy = !cfg.mmap && im->backend->reads_host_weights();
  FERRUM_ASSIGN_OR_RETURN(im->weights, WeightStore::open(path, copy ? FileAccess::Copy : FileAccess::Map));
  const ModelConfig& mc = im->weights->config();
  FERRUM_ASSIGN_OR_RETURN(const Architecture* arch, find_architecture(mc.arch));
  // A model that cannot fit is refused before any upload (an upload that fails later still names its
  // tensor).
  if (const auto mem = im->backend->device_memory(); mem && im->weights->tensor_bytes() > mem->free) {
    const double gib = 1024.0 * 1024.0 * 1024.0;
    return Error(
        fmt::format("{}: the weights need {:.2f} GiB of device memory; {} has {:.2f} of {:.2f} GiB free",
                    path, double(im->weights->tensor_bytes()) / gib, im->backend->name(),
                    double(mem->free) / gib, double(mem->total) / gib));
  }
  // The progress bar follows the uploads on a GPU, the page-in of the mapping on the host.
  const bool uploads = !im->backend->reads_host_weights();
  if (progress && uploads) im->weights->report_uploads(progress);
  FERRUM_ASSIGN_OR_RETURN(im->model, arch->build(*im->weights, *im->backend, im->profiler));
  if (progress && uploads) im->weights->finish_uploads();
  if (progress && !uploads) im->weights->prefetch(progress);

  const int64_t capacity = cfg.kv_capacity > 0 ? cfg.kv_capacity : std::min<int64_t>(mc.max_position, 4096);
  const int64_t blocks_per_seq = (capacity + KvCache::kBlockSize - 1) / KvCache::kBlockSize;
  // Sliding-window layers keep a ring per sequence when it is smaller than the context.
  KvWindow window;
  const int64_t ring_tokens = (mc.sliding_window + cfg.max_batch_tokens - 1 + KvCache::kBlockSize - 1) /
                              KvCache::kBlockSize * KvCache::kBlockSize;
  if (im->model->causal() && mc.sliding_window > 0 && ring_tokens < blocks_per_seq * KvCache::kBlockSize &&
      std::count(mc.sliding_layers.begin(), mc.sliding_layers.end(), true) > 0) {
    window = {mc.sliding_layers, mc.sliding_window, ring_tokens, std::max<int64_t>(cfg.max_seqs, 1)};
  }
  const int64_t pooled_layers = mc.n_layers - std::count(window.layers.begin(), window.layers.end(), true);
  // K and V, float32.
  const int64_t row_bytes = 2 * im->model->kv_dim() * int64_t{sizeof(float)};
  KvSizing sizing{
      .blocks_per_seq = blocks_per_seq,
      .max_seqs = cfg.max_seqs,
      .kv_blocks = cfg.kv_blocks,
      .ring_bytes = (mc.n_layers - pooled_layers) * window.n_rings * window.ring_tokens * row_bytes,
      .block_bytes = std::max<int64_t>(pooled_layers, 1) * KvCache::kBlockSize * row_bytes,
      .memory_limit = std::nullopt,
      .device_budget = std::nullopt};
  if (cfg.kv_memory_mib > 0) sizing.memory_limit = cfg.kv_memory_mib << 20;
  Impl& I = *im;
  // The step buffers first, so that what --gpu-memory-utilization leaves is measured after them.
  I.record_steps = cfg.step_graphs && !cfg.profile && I.backend->can_record() && I.model->causal();
  I.max_tokens = cfg.max_batch_tokens;
  I.width = I.model->output_width();
  // An encoder returns every token's hidden state (rows are narrow); a decoder the last tokens' logits.
  I.max_out =
      I.model->causal() ? std::min<int64_t>(I.max_tokens, std::max<int64_t>(cfg.max_seqs, 64)) : I.max_tokens;
  I.max_step_seqs = std::min<int64_t>(I.max_tokens, std::max<int64_t>(cfg.max_seqs, 1));
  I.scratch_floats = I.model->scratch_floats(I.max_tokens, I.max_out);
  FERRUM_ASSIGN_OR_RETURN(I.scratch_mem, I.backend->alloc(I.scratch_floats * sizeof(float)));
  const int64_t mb = blocks_per_seq;  // the KV cache's max_blocks_per_seq()
  const size_t n_index = static_cast<size_t>(6 * I.max_tokens + I.max_out + 2 * I.max_step_seqs * mb);
  FERRUM_ASSIGN_OR_RETURN(I.index_mem,
                          I.backend->alloc((n_index + static_cast<size_t>(I.max_out)) * sizeof(int32_t)));
  I.greedy_mem = static_cast<int32_t*>(I.index_mem) + n_index;
  FERRUM_ASSIGN_OR_RETURN(I.logits_mem,
                          I.backend->alloc(static_cast<size_t>(I.max_out * I.width) * sizeof(float)));
  I.h_tokens.reserve(static_cast<size_t>(I.max_tokens));
  I.h_slots.reserve(static_cast<size_t>(I.max_tokens));
  I.h_wslots.reserve(static_cast<size_t>(I.max_tokens));
  I.h_pos.reserve(static_cast<size_t>(I.max_tokens));
  I.h_end.reserve(static_cast<size_t>(I.max_tokens));
  I.h_seq.reserve(static_cast<size_t>(I.max_tokens));
  I.h_out.reserve(static_cast<size_t>(I.max_out));
  I.h_tables.reserve(static_cast<size_t>(I.max_step_seqs * mb));
  I.h_wtables.reserve(static_cast<size_t>(I.max_step_seqs * mb));
  if (cfg.gpu_memory_utilization > 0.0) {
    const std::optional<Backend::MemoryInfo> mem = I.backend->device_memory();
    if (!mem)
      return Error(
          fmt::format("--gpu-memory-utilization needs a GPU backend (backend {})", I.backend->name()));
    // The process may hold utilization x total; it holds total - free now (weights, buffers, context).
    const double allowed = cfg.gpu_memory_utilization * double(mem->total);
    sizing.device_budget = static_cast<int64_t>(allowed) - static_cast<int64_t>(mem->total - mem->free);
  }
  FERRUM_ASSIGN_OR_RETURN(const int64_t n_blocks, kv_pool_blocks(sizing));
  FERRUM_ASSIGN_OR_RETURN(
      I.kv, KvCache::create(*I.backend, mc.n_layers, I.model->kv_dim(), n_blocks, capacity, window));
  FERRUM_TRY(I.backend->check().with_context(path));
  return std::unique_ptr<Runtime>(new Runtime(std::move(im)));
}

const ModelConfig& Runtime::config() const { return impl_->model->config(); }
const RuntimeConfig& Runtime::runtime_config() const { return impl_->cfg; }
std::string Runtime::backend_description() const { return impl_->backend->describe(); }
bool Runtime::causal() const { return impl_->model->causal(); }
int64_t Runtime::kv_capacity() const { return impl_->kv->seq_capacity(); }
int64_t Runtime::seq_length(int64_t seq) const { return impl_->kv->length(seq); }
int64_t Runtime::kv_free_blocks() const { return impl_->kv->free_blocks(); }
int64_t Runtime::kv_total_blocks() const { return impl_->kv->total_blocks(); }
int64_t Runtime::kv_block_tokens() const { return KvCache::kBlockSize; }
int64_t Runtime::kv_seq_blocks(int64_t seq) const {
  return impl_->kv->has(seq) ? static_cast<int64_t>(impl_->kv->blocks(seq).size()) : 0;
}
int64_t Runtime::max_step_tokens() const { return impl_->max_tokens; }
int64_t Runtime::max_step_outputs() const { return impl_->max_out; }
Profiler& Runtime::profiler() { return impl_->profiler; }

Status Runtime::prepare(int64_t seq, int64_t max_tokens) { return impl_->kv->reserve(seq, max_tokens); }

void Runtime::release(int64_t seq) { impl_->kv->release(seq); }
int64_t Runtime::truncate(int64_t seq, int64_t n) { return impl_->kv->truncate(seq, n); }
size_t Runtime::kv_bytes() const { return impl_->kv->bytes(); }
void Runtime::reset() { impl_->kv->reset(); }

Result<int64_t> Runtime::run_step(std::span<const Work> work) {
  Impl& I = *impl_;
  const ModelConfig& mc = I.model->config();
  int64_t n_tokens = 0, n_out = 0;
  std::set<int64_t> seen;
  for (const Work& w : work) {
    const std::string who = "sequence " + std::to_string(w.seq);
    if (w.tokens.empty()) return Error(who + ": no tokens");
    if (!seen.insert(w.seq).second) return Error(who + ": appears twice in one step");
    if (w.pos < 0 || w.pos > I.kv->length(w.seq))
      return Error(fmt::format("{}: position {} is past its length {}", who, w.pos, I.kv->length(w.seq)));
    for (int32_t t : w.tokens)
      if (t < 0 || t >= mc.vocab_size)
        return Error(fmt::format("{}: token id {} is outside the vocabulary [0, {})", who, t, mc.vocab_size));
    n_tokens += static_cast<int64_t>(w.tokens.size());
    n_out += w.all_logits ? static_cast<int64_t>(w.tokens.size()) : 1;
  }
  if (work.empty()) return Error("empty step");
  if (n_tokens > I.max_tokens || n_out > I.max_out || static_cast<int64_t>(work.size()) > I.max_step_seqs)
    return Error(fmt::format("step of {} tokens, {} outputs, {} sequences exceeds the limits ({}, {}, {})",
                             n_tokens, n_out, work.size(), I.max_tokens, I.max_out, I.max_step_seqs));
  for (const Work& w : work) {
    // Learned position embeddings (encoders) have exactly max_position rows.
    if (!I.model->causal() && w.pos + static_cast<int64_t>(w.tokens.size()) > mc.max_position)
      return Error(fmt::format("sequence {}: {} tokens exceed the model's max_position_embeddings ({})",
                               w.seq, w.pos + static_cast<int64_t>(w.tokens.size()), mc.max_position));
    if (w.pos + static_cast<int64_t>(w.tokens.size()) > I.kv->seq_capacity())
      return Error(fmt::format("sequence {}: writing tokens [{}, {}) past the KV capacity of {} tokens",
                               w.seq, w.pos, w.pos + static_cast<int64_t>(w.tokens.size()),
                               I.kv->seq_capacity()));
    FERRUM_TRY(I.kv->reserve(w.seq, w.pos + static_cast<int64_t>(w.tokens.size())));
  }

  const int64_t mb = I.kv->max_blocks_per_seq();
  const bool causal = I.model->causal();
  I.h_tokens.clear();
  I.h_slots.clear();
  I.h_pos.clear();
  I.h_end.clear();
  I.h_seq.clear();
  I.h_out.clear();
  I.h_tables.assign(work.size() * static_cast<size_t>(mb), 0);
  const bool rings = I.kv->has_rings();
  I.h_wslots.clear();
  I.h_wtables.assign(rings ? work.size() * static_cast<size_t>(mb) : 0, 0);
  const int64_t ring_blocks = I.kv->ring_blocks(), ring_tokens = ring_blocks * KvCache::kBlockSize;
  for (size_t si = 0; si < work.size(); ++si) {
    const Work& w = work[si];
    const std::vector<int32_t>& blocks = I.kv->blocks(w.seq);
    std::copy(blocks.begin(), blocks.end(), I.h_tables.begin() + static_cast<int64_t>(si) * mb);
    const int64_t ring = rings ? I.kv->ring(w.seq) : 0;
    // Logical block b of a ring sequence is ring block b mod ring_blocks.
    for (int64_t b = 0; rings && b < mb; ++b)
      I.h_wtables[si * static_cast<size_t>(mb) + static_cast<size_t>(b)] =
          static_cast<int32_t>(ring * ring_blocks + b % ring_blocks);
    for (size_t i = 0; i < w.tokens.size(); ++i) {
      const int64_t p = w.pos + static_cast<int64_t>(i);
      if (w.all_logits || i + 1 == w.tokens.size())
        I.h_out.push_back(static_cast<int32_t>(I.h_tokens.size()));
      I.h_tokens.push_back(w.tokens[i]);
      I.h_pos.push_back(static_cast<int32_t>(p));
      I.h_end.push_back(static_cast<int32_t>(causal ? p + 1 : w.pos + static_cast<int64_t>(w.tokens.size())));
      I.h_seq.push_back(static_cast<int32_t>(si));
      I.h_slots.push_back(blocks[static_cast<size_t>(p / KvCache::kBlockSize)] *
                              static_cast<int32_t>(KvCache::kBlockSize) +
                          static_cast<int32_t>(p % KvCache::kBlockSize));
      if (rings) I.h_wslots.push_back(static_cast<int32_t>(ring * ring_tokens + p % ring_tokens));
    }
  }
  // One upload of all index arrays, laid out back to back.
  int32_t* dev = static_cast<int32_t*>(I.index_mem);
  auto put = [&](const std::vector<int32_t>& v, int64_t cap) {
    I.backend->copy_to_device(dev, v.data(), v.size() * sizeof(int32_t));
    int32_t* at = dev;
    dev += cap;
    return at;
  };
  Step s;
  s.n_tokens = n_tokens;
  s.tokens = put(I.h_tokens, I.max_tokens);
  s.slots = put(I.h_slots, I.max_tokens);
  s.layout.positions = put(I.h_pos, I.max_tokens);
  s.layout.kv_end = put(I.h_end, I.max_tokens);
  s.layout.seq_index = put(I.h_seq, I.max_tokens);
  s.out_rows = put(I.h_out, I.max_out);
  s.layout.block_tables = put(I.h_tables, I.max_step_seqs * mb);
  s.layout.n_tokens = n_tokens;
  s.layout.max_blocks = mb;
  s.layout.block_size = KvCache::kBlockSize;
  s.window_slots = s.slots;
  s.window_layout = s.layout;
  if (rings) {
    s.window_slots = put(I.h_wslots, I.max_tokens);
    s.window_layout.block_tables = put(I.h_wtables, I.max_step_seqs * mb);
  }
  s.n_out = n_out;

  ScratchArena arena(static_cast<float*>(I.scratch_mem), I.scratch_floats);
  Tensor logits = Tensor::f32(static_cast<float*>(I.logits_mem), n_out, I.width);
  // A decode step (one token per sequence) queues the same ops on the same buffers as every other
  // decode step of its batch size: only buffer contents differ. The first one of each size runs op
  // by op (and makes every buffer the ops need), the second is recorded, later ones replay it.
  Impl::Recorded* rec = nullptr;
  if (I.record_steps && n_out == n_tokens && n_tokens == static_cast<int64_t>(work.size()))
    rec = &I.recorded[n_tokens];
  if (rec && rec->graph) {
    I.backend->replay(*rec->graph);
  } else {
    if (rec && rec->warmed) I.backend->record_begin();
    const Status st = I.model->forward(s, *I.kv, arena, logits);
    if (rec && rec->warmed) {
      auto graph = I.backend->record_end();
      if (!st.ok()) return st;
      if (!graph.ok())
        return graph.status().with_context(fmt::format("recording a decode step of {} tokens", n_tokens));
      rec->graph = std::move(graph).value();
      I.backend->replay(*rec->graph);
    }
    FERRUM_TRY(st);
    if (arena.overflowed()) return Error("internal: model scratch estimate too small for " + mc.arch);
    if (rec) rec->warmed = true;
  }
  return n_out;
}

Status Runtime::finish_step(std::span<const Work> work) {
  Impl& I = *impl_;
  FERRUM_TRY(I.backend->check().with_context("step"));
  for (const Work& w : work) I.kv->set_length(w.seq, w.pos + static_cast<int64_t>(w.tokens.size()));
  I.profiler.count_step();
  return {};
}

Result<LogitsView> Runtime::step(std::span<const Work> work) {
  Impl& I = *impl_;
  FERRUM_ASSIGN_OR_RETURN(const int64_t n_out, run_step(work));
  // The host rows grow with the largest step seen: sized for max_out rows up front they made 39 MB of
  // zeros resident for a 152k vocabulary (64 rows) in a single-stream run.
  const auto n_logits = static_cast<size_t>(n_out * I.width);
  if (I.h_logits.size() < n_logits) I.h_logits.resize(n_logits);
  I.backend->copy_to_host(I.h_logits.data(), I.logits_mem, n_logits * sizeof(float));
  FERRUM_TRY(finish_step(work));
  return LogitsView{I.h_logits.data(), n_out, I.width};
}

Result<std::span<const int32_t>> Runtime::step_greedy(std::span<const Work> work) {
  Impl& I = *impl_;
  if (!I.model->causal()) return Error("greedy decoding needs a decoder; this model is an encoder");
  FERRUM_ASSIGN_OR_RETURN(const int64_t n_out, run_step(work));
  I.backend->argmax_rows(Tensor::f32(static_cast<float*>(I.logits_mem), n_out, I.width), I.greedy_mem);
  I.h_greedy.resize(static_cast<size_t>(n_out));
  I.backend->copy_to_host(I.h_greedy.data(), I.greedy_mem, I.h_greedy.size() * sizeof(int32_t));
  FERRUM_TRY(finish_step(work));
  return std::span<const int32_t>(I.h_greedy);
}

Result<LogitsView> Runtime::prefill(int64_t seq, std::span<const int32_t> tokens, bool all_logits) {
  Impl& I = *impl_;
  if (tokens.empty()) return Error("sequence " + std::to_string(seq) + ": prefill of no tokens");
  const int64_t chunk = all_logits ? std::min(I.max_tokens, I.max_out) : I.max_tokens;
  const int64_t total = static_cast<int64_t>(tokens.size());
  if (I.kv->length(seq) + total > I.kv->seq_capacity())
    return Error(fmt::format("sequence {}: {} + {} tokens exceed the KV capacity of {} tokens", seq,
                             I.kv->length(seq), total, I.kv->seq_capacity()));
  std::vector<float>& all = I.all_rows;
  if (all_logits) all.resize(static_cast<size_t>(total * I.width));
  LogitsView last;
  for (int64_t off = 0; off < total; off += chunk) {
    const int64_t n = std::min(chunk, total - off);
    Work w{seq, tokens.subspan(static_cast<size_t>(off), static_cast<size_t>(n)), I.kv->length(seq),
           all_logits};
    FERRUM_ASSIGN_OR_RETURN(last, step(std::span<const Work>(&w, 1)));
    if (all_logits) std::copy(last.data, last.data + last.rows * last.vocab, all.begin() + off * last.vocab);
  }
  if (all_logits) return LogitsView{all.data(), total, I.width};
  return last;
}

Result<LogitsView> Runtime::decode(int64_t seq, int32_t token, int64_t pos) {
  Work w{seq, std::span<const int32_t>(&token, 1), pos, false};
  return step(std::span<const Work>(&w, 1));
}

namespace {

// One single-token entry per item, in `buf`.
std::span<const Runtime::Work> decode_work(std::span<const Runtime::DecodeItem> items,
                                           std::vector<Runtime::Work>& buf) {
  buf.clear();
  for (const Runtime::DecodeItem& it : items)
    buf.push_back(Runtime::Work{it.seq, std::span<const int32_t>(&it.token, 1), it.pos, false});
  return buf;
}

}  // namespace

Result<LogitsView> Runtime::decode_batch(std::span<const DecodeItem> items) {
  return step(decode_work(items, impl_->work_buf));
}

Result<std::span<const int32_t>> Runtime::decode_batch_greedy(std::span<const DecodeItem> items) {
  return step_greedy(decode_work(items, impl_->work_buf));
}

namespace {

// Sequence ids the embedding calls use while they run (callers' sequences are >= 0).
constexpr int64_t kEmbedSeq = -1;

// One input's hidden states [n, H] pooled; L2 normalization as torch.nn.functional.normalize
// (sentence-transformers' Normalize): v / max(|v|, 1e-12).
std::vector<float> pool(const float* rows, int64_t n, int64_t H, const Runtime::EmbedOptions& opt) {
  std::vector<float> out;
  if (opt.pooling == Pooling::None) {
    out.assign(rows, rows + n * H);
  } else if (opt.pooling == Pooling::Cls) {
    out.assign(rows, rows + H);
  } else {
    std::vector<double> acc(static_cast<size_t>(H), 0.0);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < H; ++i) acc[static_cast<size_t>(i)] += rows[t * H + i];
    for (double a : acc) out.push_back(static_cast<float>(a / double(n)));
  }
  if (opt.normalize) {
    for (size_t r = 0; r < out.size(); r += static_cast<size_t>(H)) {
      double ss = 0;
      for (int64_t i = 0; i < H; ++i) ss += double(out[r + i]) * double(out[r + i]);
      const float inv = static_cast<float>(1.0 / std::max(std::sqrt(ss), 1e-12));
      for (int64_t i = 0; i < H; ++i) out[r + i] *= inv;
    }
  }
  return out;
}

}  // namespace

Runtime::EmbedOptions Runtime::default_embed_options() const {
  return EmbedOptions{config().pooling, config().normalize};
}

Result<std::vector<float>> Runtime::embed(std::span<const int32_t> tokens, const EmbedOptions& opt) {
  const std::vector<int32_t> one(tokens.begin(), tokens.end());
  FERRUM_ASSIGN_OR_RETURN(auto vecs, embed_batch(std::span<const std::vector<int32_t>>(&one, 1), opt));
  return std::move(vecs.front());
}

Result<std::vector<std::vector<float>>> Runtime::embed_batch(std::span<const std::vector<int32_t>> inputs,
                                                             const EmbedOptions& opt) {
  Impl& I = *impl_;
  const ModelConfig& mc = I.model->config();
  if (I.model->causal()) return Error("embeddings need an encoder model; '" + mc.arch + "' is a decoder");
  if (inputs.empty()) return Error("embed: no inputs");
  for (size_t i = 0; i < inputs.size(); ++i) {
    const int64_t n = static_cast<int64_t>(inputs[i].size());
    if (n == 0) return Error(fmt::format("input {}: no tokens", i));
    if (n > mc.max_position)
      return Error(fmt::format("input {}: {} tokens exceed the model's max_position_embeddings ({})", i, n,
                               mc.max_position));
    if (n > I.kv->seq_capacity())
      return Error(fmt::format("input {}: {} tokens exceed the KV capacity of {} tokens per sequence", i, n,
                               I.kv->seq_capacity()));
    if (n > I.max_tokens)
      return Error(
          fmt::format("input {}: {} tokens exceed max_batch_tokens ({}); an encoder runs each input "
                      "in one step",
                      i, n, I.max_tokens));
    for (int32_t t : inputs[i])
      if (t < 0 || t >= mc.vocab_size)
        return Error(
            fmt::format("input {}: token id {} is outside the vocabulary [0, {})", i, t, mc.vocab_size));
  }
  std::vector<std::vector<float>> out;
  out.reserve(inputs.size());
  std::vector<Work>& work = I.work_buf;
  for (size_t next = 0; next < inputs.size(); next += work.size()) {
    // Pack consecutive inputs into one step while the step's token, sequence and KV limits allow.
    work.clear();
    int64_t tokens = 0, blocks = 0;
    const int64_t free_blocks = I.kv->free_blocks();
    while (next + work.size() < inputs.size() && static_cast<int64_t>(work.size()) < I.max_step_seqs) {
      const std::vector<int32_t>& in = inputs[next + work.size()];
      const int64_t n = static_cast<int64_t>(in.size());
      const int64_t nb = (n + KvCache::kBlockSize - 1) / KvCache::kBlockSize;
      if (!work.empty() && (tokens + n > I.max_tokens || blocks + nb > free_blocks)) break;
      work.push_back(Work{kEmbedSeq - static_cast<int64_t>(work.size()), in, 0, true});
      tokens += n;
      blocks += nb;
    }
    auto lv = step(work);
    for (const Work& w : work) I.kv->release(w.seq);
    if (!lv.ok()) return lv.status();
    int64_t row = 0;
    for (const Work& w : work) {
      out.push_back(pool(lv->row(row), static_cast<int64_t>(w.tokens.size()), I.width, opt));
      row += static_cast<int64_t>(w.tokens.size());
    }
  }
  return out;
}

}  // namespace ferrum
