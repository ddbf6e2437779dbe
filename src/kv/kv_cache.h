// The KV manager: per-layer K/V pools of fixed-size blocks, a free list, and a block table per
// sequence. A contiguous cache is the special case of a sequence whose blocks happen to be
// consecutive; attention always reads through the block table. It owns all KV memory.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "backend/backend.h"

namespace ferrum {

class KvCache {
 public:
  static constexpr int64_t kBlockSize = 16;

  // Pool of n_blocks blocks per layer; each sequence may hold up to `seq_capacity` tokens.
  static Result<std::unique_ptr<KvCache>> create(Backend& backend, int64_t n_layers, int64_t kv_dim,
                                                 int64_t n_blocks, int64_t seq_capacity);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // Makes room for positions [0, n_tokens) of `seq` (allocating blocks as needed). Fails, naming
  // the sequence and sizes, past the per-sequence capacity or when the pool is exhausted.
  Status reserve(int64_t seq, int64_t n_tokens);
  // Returns the sequence's blocks to the free list.
  void release(int64_t seq);
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

 private:
  KvCache(Backend& b) : backend_(b) {}
  struct Seq {
    std::vector<int32_t> blocks;
    int64_t length = 0;
  };
  Backend& backend_;
  int64_t n_blocks_ = 0, seq_capacity_ = 0;
  std::vector<Tensor> k_, v_;
  std::vector<int32_t> free_;
  std::map<int64_t, Seq> seqs_;
};

}  // namespace ferrum
