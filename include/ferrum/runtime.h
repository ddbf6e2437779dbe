// The runtime API: a loaded model, its backend, its KV cache and scratch memory, and the calls
// that run it (mirrors ferrum-infer-rs's DecoderOnlyLLM). Not thread-safe: one caller drives it
// (the CLI, or the server's scheduler thread).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ferrum/config.h"
#include "ferrum/model_config.h"
#include "ferrum/status.h"

namespace ferrum {

class Profiler;

// Logits rows [rows, vocab] in host memory owned by the runtime; valid until its next call.
// For an encoder the rows are final hidden states and `vocab` is the hidden size.
struct LogitsView {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t vocab = 0;
  const float* row(int64_t i) const { return data + i * vocab; }
};

class Runtime {
 public:
  // `model_path`: a .gguf file or a Hugging Face folder.
  // `progress(done, total)` (optional) follows the weights being read into memory.
  static Result<std::unique_ptr<Runtime>> load(const std::string& model_path, const RuntimeConfig& cfg,
                                               const std::function<void(size_t, size_t)>& progress = nullptr);
  ~Runtime();

  const ModelConfig& config() const;
  const RuntimeConfig& runtime_config() const;
  std::string backend_description() const;
  // False for encoders (BERT): they embed, they do not generate.
  bool causal() const;

  // Appends `tokens` to sequence `seq` (after what it already holds) and returns the logits after
  // the last token, or after every token when `all_logits`. Long inputs run in chunks.
  Result<LogitsView> prefill(int64_t seq, std::span<const int32_t> tokens, bool all_logits = false);
  // Runs one token at position `pos` (<= the sequence's length; a smaller pos rewinds the sequence).
  Result<LogitsView> decode(int64_t seq, int32_t token, int64_t pos);
  struct DecodeItem {
    int64_t seq;
    int32_t token;
    int64_t pos;
  };
  // One token for each of several distinct sequences in one step; row i belongs to items[i].
  Result<LogitsView> decode_batch(std::span<const DecodeItem> items);

  // The general step the others are built on: a ragged batch, each entry a run of tokens of one
  // sequence starting at `pos`. Logits come back for each entry's last token, or all its tokens.
  struct Work {
    int64_t seq;
    std::span<const int32_t> tokens;
    int64_t pos;
    bool all_logits = false;
  };
  Result<LogitsView> step(std::span<const Work> work);
  // Greedy decoding where the logits are: step's rows reduced on the backend to their largest logit's
  // token (the lowest id on ties), so a GPU copies ids instead of logits rows to the host. A row whose
  // largest logit is not finite (NaN, +inf, only -inf) gives -1. Decoders only; the ids are valid until
  // the next call.
  Result<std::span<const int32_t>> step_greedy(std::span<const Work> work);
  Result<std::span<const int32_t>> decode_batch_greedy(std::span<const DecodeItem> items);

  // Encoders (BERT): final hidden states pooled per EmbedOptions (the model's choice by default:
  // sentence-transformers modules, GGUF pooling_type). Mean/Cls give [hidden] per input, None
  // [n_tokens * hidden]; `normalize` scales each vector (each token row for None) to unit L2
  // norm. Every input runs whole in one step (attention is bidirectional, so it cannot be
  // chunked): it must fit max_batch_tokens, the KV capacity and max_position_embeddings. Inputs
  // that fit together share a step; each attends only to its own keys, so no padding is involved.
  struct EmbedOptions {
    Pooling pooling = Pooling::Mean;
    bool normalize = false;
  };
  EmbedOptions default_embed_options() const;
  Result<std::vector<float>> embed(std::span<const int32_t> tokens, const EmbedOptions& opt);
  Result<std::vector<std::vector<float>>> embed_batch(std::span<const std::vector<int32_t>> inputs,
                                                      const EmbedOptions& opt);

  // Reserves KV for `max_tokens` tokens of `seq` now (warm-up), so later steps cannot run out.
  Status prepare(int64_t seq, int64_t max_tokens);
  // Forgets the sequence's tokens from position n on (its blocks stay reserved for reuse) and
  // returns how many it keeps: n, or 0 when a sliding-window layer's ring has already written over
  // keys that position n needs (then the caller prefills from the start).
  int64_t truncate(int64_t seq, int64_t n);
  // Returns the sequence's KV blocks to the pool.
  void release(int64_t seq);
  // Releases every sequence.
  void reset();
  int64_t kv_capacity() const;
  int64_t seq_length(int64_t seq) const;
  int64_t kv_free_blocks() const;
  int64_t kv_total_blocks() const;
  int64_t kv_block_tokens() const;           // tokens per KV block
  int64_t kv_seq_blocks(int64_t seq) const;  // blocks the sequence holds (reserved included)
  size_t kv_bytes() const;                   // KV cache memory (pool and sliding-window rings)
  // Tokens one step may hold, and logit rows one step may return.
  int64_t max_step_tokens() const;
  int64_t max_step_outputs() const;
  Profiler& profiler();

 private:
  struct Impl;
  explicit Runtime(std::unique_ptr<Impl> impl);
  // step's work up to the logits rows on the backend; returns their number.
  Result<int64_t> run_step(std::span<const Work> work);
  // After the results are copied: reports device failures and commits the sequences' lengths.
  Status finish_step(std::span<const Work> work);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferrum
