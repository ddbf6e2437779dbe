#include "engine/stop.h"

#include <fmt/format.h>

#include <algorithm>

namespace ferrum {

std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop:
      return "stop";
    case FinishReason::Length:
    case FinishReason::ContextFull:
      return "length";
    case FinishReason::None:
      break;
  }
  return "";
}

Result<StopChecker> StopChecker::create(StopConfig config) {
  for (size_t i = 0; i < config.stop_strings.size(); ++i) {
    if (config.stop_strings[i].empty())
      return Error(fmt::format("stop conditions: stop string {} is empty", i));
  }
  if (config.max_tokens < 0 || config.context_limit < 0 || config.prompt_tokens < 0) {
    return Error(fmt::format("stop conditions: negative max_tokens {}, context_limit {} or prompt_tokens {}",
                             config.max_tokens, config.context_limit, config.prompt_tokens));
  }
  if (config.context_limit > 0 && config.prompt_tokens >= config.context_limit) {
    return Error(fmt::format("stop conditions: a prompt of {} tokens leaves no room in a context of {}",
                             config.prompt_tokens, config.context_limit));
  }
  return StopChecker(std::move(config));
}

StopResult StopChecker::finish(std::string emit, FinishReason reason) {
  held_.clear();
  reason_ = reason;
  return {std::move(emit), true, reason};
}

size_t StopChecker::partial_match() const {
  size_t best = 0;
  for (const auto& s : config_.stop_strings) {
    for (size_t len = std::min(s.size() - 1, held_.size()); len > best; --len) {
      if (std::string_view(held_).ends_with(std::string_view(s).substr(0, len))) {
        best = len;
        break;
      }
    }
  }
  return best;
}

StopResult StopChecker::on_token(int32_t id, std::string_view text_chunk) {
  if (reason_ != FinishReason::None) return {"", true, reason_};
  ++generated_;
  if (std::find(config_.eos_ids.begin(), config_.eos_ids.end(), id) != config_.eos_ids.end()) {
    return finish(std::move(held_), FinishReason::Stop);
  }
  held_ += text_chunk;
  // held_ had no complete stop string before this chunk, so the earliest one found ends in it.
  size_t stop_at = std::string::npos;
  for (const auto& s : config_.stop_strings) stop_at = std::min(stop_at, held_.find(s));
  if (stop_at != std::string::npos) return finish(held_.substr(0, stop_at), FinishReason::Stop);
  if (config_.max_tokens > 0 && generated_ >= config_.max_tokens) {
    return finish(std::move(held_), FinishReason::Length);
  }
  // The sequence never holds more than context_limit tokens, so each token but the last has a KV slot.
  if (config_.context_limit > 0 && config_.prompt_tokens + generated_ >= config_.context_limit) {
    return finish(std::move(held_), FinishReason::ContextFull);
  }
  const size_t release = held_.size() - partial_match();
  StopResult r{held_.substr(0, release), false, FinishReason::None};
  held_.erase(0, release);
  return r;
}

std::string StopChecker::flush() {
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace ferrum
