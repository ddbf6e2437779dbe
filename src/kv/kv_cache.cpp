#include "kv/kv_cache.h"

#include <algorithm>

namespace ferrum {

Result<std::unique_ptr<KvCache>> KvCache::create(Backend& backend, int64_t n_layers, int64_t kv_dim,
                                                 int64_t n_blocks, int64_t seq_capacity, const KvWindow& window) {
  std::unique_ptr<KvCache> kv(new KvCache(backend));
  kv->n_blocks_ = n_blocks;
  kv->seq_capacity_ = seq_capacity;
  if (window.n_rings > 0 && (window.ring_tokens <= 0 || window.ring_tokens % kBlockSize != 0))
    return Error("KV cache: ring of " + std::to_string(window.ring_tokens) + " tokens is not a positive multiple of " +
                 std::to_string(kBlockSize));
  kv->window_ = window;
  for (int64_t l = 0; l < n_layers; ++l) {
    const int64_t rows = kv->windowed(l) ? window.n_rings * window.ring_tokens : n_blocks * kBlockSize;
    for (auto* pool : {&kv->k_, &kv->v_}) {
      const size_t bytes = static_cast<size_t>(rows * kv_dim) * sizeof(float);
      auto mem = backend.alloc(bytes);
      if (!mem.ok()) return mem.status().with_context("KV cache layer " + std::to_string(l));
      pool->push_back(Tensor::f32(static_cast<float*>(mem.value()), rows, kv_dim));
      kv->bytes_ += bytes;
    }
  }
  kv->reset();
  return kv;
}

KvCache::~KvCache() {
  for (auto& t : k_) backend_.free(t.data);
  for (auto& t : v_) backend_.free(t.data);
}

Status KvCache::reserve(int64_t seq, int64_t n_tokens) {
  if (n_tokens > seq_capacity_)
    return Error("sequence " + std::to_string(seq) + ": " + std::to_string(n_tokens) +
                 " tokens exceed the KV capacity of " + std::to_string(seq_capacity_) + " tokens per sequence");
  if (has_rings() && ring(seq) < 0 && free_rings_.empty())
    return Error("sequence " + std::to_string(seq) + ": all " + std::to_string(window_.n_rings) +
                 " sliding-window KV rings are taken (at most that many sequences hold KV at once)");
  Seq& s = seqs_[seq];
  if (has_rings() && s.ring < 0) {
    s.ring = free_rings_.back();
    free_rings_.pop_back();
  }
  const int64_t need = (n_tokens + kBlockSize - 1) / kBlockSize;
  const int64_t missing = need - static_cast<int64_t>(s.blocks.size());
  if (missing > static_cast<int64_t>(free_.size()))
    return Error("sequence " + std::to_string(seq) + ": KV pool exhausted (needs " + std::to_string(missing) +
                 " more blocks of " + std::to_string(kBlockSize) + " tokens, " + std::to_string(free_.size()) +
                 " free of " + std::to_string(n_blocks_) + ")");
  for (int64_t i = 0; i < missing; ++i) {
    s.blocks.push_back(free_.back());
    free_.pop_back();
  }
  return {};
}

void KvCache::release(int64_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  // Freed blocks go to the back so the next reservation reuses them first (warm pages).
  for (auto b = it->second.blocks.rbegin(); b != it->second.blocks.rend(); ++b) free_.push_back(*b);
  if (it->second.ring >= 0) free_rings_.push_back(it->second.ring);
  seqs_.erase(it);
}

int64_t KvCache::truncate(int64_t seq, int64_t n) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return 0;
  Seq& s = it->second;
  n = std::clamp<int64_t>(n, 0, s.length);
  // The token at position n needs positions [n - window + 1, n) of windowed layers; position p was
  // written over if p + ring_tokens < length.
  if (has_rings() && n > 0 && std::max<int64_t>(0, n - window_.window + 1) + window_.ring_tokens < s.length) n = 0;
  s.length = n;
  return n;
}

int32_t KvCache::ring(int64_t seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? -1 : it->second.ring;
}

void KvCache::reset() {
  seqs_.clear();
  free_rings_.resize(static_cast<size_t>(window_.n_rings));
  for (int64_t i = 0; i < window_.n_rings; ++i)
    free_rings_[static_cast<size_t>(i)] = static_cast<int32_t>(window_.n_rings - 1 - i);
  free_.resize(static_cast<size_t>(n_blocks_));
  // Lowest block ids are handed out first: a fresh sequence gets consecutive blocks.
  for (int64_t i = 0; i < n_blocks_; ++i) free_[static_cast<size_t>(i)] = static_cast<int32_t>(n_blocks_ - 1 - i);
}

int64_t KvCache::length(int64_t seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : it->second.length;
}

void KvCache::set_length(int64_t seq, int64_t n) { seqs_[seq].length = n; }

const std::vector<int32_t>& KvCache::blocks(int64_t seq) const {
  static const std::vector<int32_t> kNone;
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? kNone : it->second.blocks;
}

}  // namespace ferrum
