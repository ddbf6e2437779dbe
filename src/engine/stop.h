// When one generation ends, and which of its text may be streamed out yet.
//
// Text arrives as decoded chunks, one per token (the tokenizer's streaming decoder). A stop string
// may span chunks, so a tail that could still grow into a stop string is held back until the next
// chunk settles it; a completed stop string and everything after it are never emitted. The EOS token's
// own text is never emitted either.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ferrum/status.h"

namespace ferrum {

enum class FinishReason { None, Stop, Length, ContextFull };

// OpenAI's finish_reason: "stop", or "length" for both limits; "" while running.
std::string_view finish_reason_name(FinishReason r);

struct StopConfig {
  std::vector<int32_t> eos_ids;
  std::vector<std::string> stop_strings;  // each non-empty
  int32_t max_tokens = 0;                 // generated tokens; 0: no limit
  int32_t context_limit = 0;              // prompt + generated tokens; 0: no limit
  int32_t prompt_tokens = 0;
};

struct StopResult {
  std::string emit;  // text to stream now
  bool stopped = false;
  FinishReason reason = FinishReason::None;
};

class StopChecker {
 public:
  // Fails on an empty stop string, negative counts, or a prompt that fills the context.
  static Result<StopChecker> create(StopConfig config);

  // Feeds one generated token and its decoded text. Precedence on the same token: EOS, then a stop
  // string, then max_tokens (Length), then the context (ContextFull). On a stop the held-back text
  // before the stop string is released; after it every call returns stopped with nothing to emit.
  StopResult on_token(int32_t id, std::string_view text_chunk);

  // Releases the held-back text; for ending a generation early (e.g. a cancelled request).
  std::string flush();

 private:
  explicit StopChecker(StopConfig config) : config_(std::move(config)) {}
  StopResult finish(std::string emit, FinishReason reason);
  // Length of the longest tail of held_ that is a proper prefix of some stop string.
  size_t partial_match() const;

  StopConfig config_;
  std::string held_;
  int32_t generated_ = 0;
  FinishReason reason_ = FinishReason::None;
};

}  // namespace ferrum
