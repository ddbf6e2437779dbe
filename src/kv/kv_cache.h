// The KV manager: per-layer K/V pools of fixed-size blocks, a free list, and a block table per
// sequence. A contiguous cache is the special case of a sequence whose blocks happen to be
// consecutive; attention always reads through the block table. It owns all KV memory.
//
// Sliding-window layers (KvWindow) only ever read a sequence's last `window` keys, so they do not
// take blocks from the pool: each sequence gets one ring of `ring_tokens` rows in those layers,
// and position p lives at row p % ring_tokens of its ring. A ring must also hold the keys one step
// writes before it reads them: ring_tokens >= window + tokens per step - 1.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "backend/backend.h"

namespace ferrum {

struct KvWindow {
  std::vector<bool> layers;  // per layer: a sliding-window layer (empty: none)
  int64_t window = 0;        // keys a token of those layers sees, itself included
  int64_t ring_tokens = 0;   // rows per ring, a multiple of KvCache::kBlockSize
  int64_t n_rings = 0;       // sequences that may hold KV at once
};

class KvCache {
 public:
  static constexpr int64_t kBlockSize = 16;

  // Pool of n_blocks blocks per (full-attention) layer; each sequence may hold up to `seq_capacity`
  // tokens. Rings for the window's layers when given.
  static Result<std::unique_ptr<KvCache>> create(Backend& backend, int64_t n_layers, int64_t kv_dim,
                                                 int64_t n_blocks, int64_t seq_capacity, const KvWindow& window = {});
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // Makes room for positions [0, n_tokens) of `seq` (allocating blocks as needed). Fails, naming
  // the sequence and sizes, past the per-sequence capacity or when the pool is exhausted.
  Status reserve(int64_t seq, int64_t n_tokens);
  // Returns the sequence's blocks (and ring) to the free lists.
  void release(int64_t seq);
  // Forgets the sequence's tokens from position n on and returns how many it keeps: n, or 0 when
  // its ring no longer holds the keys that position n would need.
  int64_t truncate(int64_t seq, int64_t n);
  void reset();

  // Tokens whose K/V are stored for `seq` (0 for an unknown sequence).
  int64_t length(int64_t seq) const;
  void set_length(int64_t seq, int64_t n);
  const std::vector<int32_t>& blocks(int64_t seq) const;
  bool has(int64_t seq) const { return seqs_.count(seq) != 0; }

  int64_t seq_capacity() const { return seq_capacity_; }
  int64_t total_blocks() const { return n_blocks_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t max_blocks_per_seq() const { return (seq_capacity_ + kBlockSize - 1) / kBlockSize; }
  Tensor k(int64_t layer) const { return k_[layer]; }
  Tensor v(int64_t layer) const { return v_[layer]; }
  // Whether `layer` keeps a ring per sequence instead of pool blocks.
  bool windowed(int64_t layer) const {
    return layer < static_cast<int64_t>(window_.layers.size()) && window_.layers[layer];
  }
  bool has_rings() const { return window_.n_rings > 0; }
  int64_t ring_blocks() const { return window_.ring_tokens / kBlockSize; }
  // The sequence's ring (rows [ring * ring_tokens, (ring + 1) * ring_tokens) of windowed layers).
  int32_t ring(int64_t seq) const;
  size_t bytes() const { return bytes_; }

 private:
  KvCache(Backend& b) : backend_(b) {}
  struct Seq {
    std::vector<int32_t> blocks;
    int64_t length = 0;
    int32_t ring = -1;
  };
  Backend& backend_;
  int64_t n_blocks_ = 0, seq_capacity_ = 0;
  std::vector<Tensor> k_, v_;
  std::vector<int32_t> free_, free_rings_;
  std::map<int64_t, Seq> seqs_;
  KvWindow window_;
  size_t bytes_ = 0;
};

}  // namespace ferrum
