// Text generation for one sequence: prefill (reusing the part of the prompt already in the
// sequence's KV cache), then sample → detokenize → stop check → stream, until a stop condition.
// `ferrum run` drives one of these per conversation; the server's scheduler batches many.
#pragma once

#include <atomic>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampler.h"
#include "engine/stop.h"
#include "ferrum/runtime.h"
#include "tokenizer/tokenizer.h"

namespace ferrum {

struct GenerateOptions {
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings (never emitted)
  int32_t max_tokens = 256;       // 0: until EOS or the context is full
  bool ignore_eos = false;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (the stop token included)
  std::string text;             // streamed text, stop strings excluded
  FinishReason reason = FinishReason::None;
  bool cancelled = false;
  int64_t prompt_tokens = 0;    // tokens of the prompt
  int64_t reused_tokens = 0;    // of those, already in the KV cache (not prefilled again)
  double prefill_seconds = 0, decode_seconds = 0;
};

// Ids that end a generation: the tokenizer's EOS / end-of-turn ids and the model config's eos ids.
std::vector<int32_t> end_of_generation_ids(const Tokenizer& tok, const ModelConfig& config);

class Conversation {
 public:
  Conversation(Runtime& rt, const Tokenizer& tok, int64_t seq) : rt_(rt), tok_(tok), seq_(seq) {}
  ~Conversation() { rt_.release(seq_); }
  Conversation(const Conversation&) = delete;
  Conversation& operator=(const Conversation&) = delete;

  // Generates a continuation of `prompt` (the whole context: earlier turns included); `on_text`
  // receives text as it becomes final. `cancel` (e.g. set by Ctrl-C) stops at the next token.
  Result<GenerateResult> generate(std::span<const int32_t> prompt, const GenerateOptions& opt,
                                  const std::function<void(std::string_view)>& on_text,
                                  const std::atomic<bool>* cancel = nullptr);
  // Drops the cached context (the next prompt is prefilled in full).
  void clear();

 private:
  Runtime& rt_;
  const Tokenizer& tok_;
  int64_t seq_;
  std::vector<int32_t> cached_;  // tokens whose K/V are in the cache, in order
  std::vector<float> logits_;    // mutable copy for the sampler, reused
};

}  // namespace ferrum
