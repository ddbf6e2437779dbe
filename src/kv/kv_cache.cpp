#include "kv/kv_cache.h"

#include <algorithm>

namespace ferrum {

Result<std::unique_ptr<KvCache>> KvCache::create(Backend& backend, int64_t n_layers, int64_t kv_dim,
                                                 int64_t n_blocks, int64_t seq_capacity) {
  std::unique_ptr<KvCache> kv(new KvCache(backend));
  kv->n_blocks_ = n_blocks;
  kv->seq_capacity_ = seq_capacity;
  const int64_t rows = n_blocks * kBlockSize;
  for (int64_t l = 0; l < n_layers; ++l) {
    for (auto* pool : {&kv->k_, &kv->v_}) {
      auto mem = backend.alloc(static_cast<size_t>(rows * kv_dim) * sizeof(float));
      if (!mem.ok()) return mem.status().with_context("KV cache layer " + std::to_string(l));
      pool->push_back(Tensor::f32(static_cast<float*>(mem.value()), rows, kv_dim));
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
  Seq& s = seqs_[seq];
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
  seqs_.erase(it);
}

void KvCache::reset() {
  seqs_.clear();
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
