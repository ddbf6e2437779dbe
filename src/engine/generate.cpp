#include "engine/generate.h"

#include <algorithm>
#include <chrono>

namespace ferrum {

std::vector<int32_t> end_of_generation_ids(const Tokenizer& tok, const ModelConfig& config) {
  std::vector<int32_t> ids = tok.eos_ids();
  for (int64_t id : config.eos_ids)
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(static_cast<int32_t>(id));
  return ids;
}

void Conversation::clear() {
  cached_.clear();
  rt_.release(seq_);
}

Result<GenerateResult> Conversation::generate(std::span<const int32_t> prompt, const GenerateOptions& opt,
                                              const std::function<void(std::string_view)>& on_text,
                                              const std::atomic<bool>* cancel) {
  using clock = std::chrono::steady_clock;
  GenerateResult res;
  res.prompt_tokens = static_cast<int64_t>(prompt.size());
  if (prompt.empty()) return Error("empty prompt");
  const int64_t capacity = rt_.kv_capacity();
  if (static_cast<int64_t>(prompt.size()) >= capacity)
    return Error("prompt of " + std::to_string(prompt.size()) + " tokens does not fit the context of " +
                 std::to_string(capacity) + " tokens (raise --ctx-size)");

  // Reuse the longest common prefix with what the cache holds; at least one token is prefilled
  // so that logits exist for the first sampled token.
  size_t common = 0;
  while (common < cached_.size() && common < prompt.size() && cached_[common] == prompt[common]) ++common;
  if (common == prompt.size()) --common;
  common = static_cast<size_t>(rt_.truncate(seq_, static_cast<int64_t>(common)));
  cached_.resize(common);
  res.reused_tokens = static_cast<int64_t>(common);

  FERRUM_ASSIGN_OR_RETURN(Sampler sampler, Sampler::create(opt.sampling, static_cast<int32_t>(rt_.config().vocab_size)));
  FERRUM_TRY(sampler.add_prompt(prompt));
  StopConfig sc;
  if (!opt.ignore_eos) {
    sc.eos_ids = end_of_generation_ids(tok_, rt_.config());
  }
  sc.stop_strings = opt.stop;
  sc.max_tokens = opt.max_tokens;
  sc.context_limit = static_cast<int32_t>(capacity);
  sc.prompt_tokens = static_cast<int32_t>(prompt.size());
  FERRUM_ASSIGN_OR_RETURN(StopChecker stop, StopChecker::create(sc));

  auto t0 = clock::now();
  auto lv = rt_.prefill(seq_, prompt.subspan(common));
  if (!lv.ok()) return lv.status();
  cached_.assign(prompt.begin(), prompt.end());
  auto t1 = clock::now();
  res.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

  StreamDecoder dec(tok_, /*skip_special=*/true);
  // Prime the decoder with the last prompt token so the first generated piece keeps its leading
  // space exactly as a decode of the whole text would; that token's own text is not emitted.
  (void)dec.step(prompt.back());
  while (true) {
    if (cancel && cancel->load()) {
      res.cancelled = true;
      break;
    }
    const int64_t V = lv->vocab;
    logits_.assign(lv->row(lv->rows - 1), lv->row(lv->rows - 1) + V);
    FERRUM_ASSIGN_OR_RETURN(int32_t next, sampler.sample(logits_));
    res.tokens.push_back(next);
    StopResult sr = stop.on_token(next, dec.step(next));
    if (!sr.emit.empty()) {
      res.text += sr.emit;
      on_text(sr.emit);
    }
    if (sr.stopped) {
      res.reason = sr.reason;
      break;
    }
    lv = rt_.decode(seq_, next, static_cast<int64_t>(cached_.size()));
    if (!lv.ok()) return lv.status();
    cached_.push_back(next);
  }
  // Held-back text (a possible stop-string start) is final when generation was cut short; bytes of
  // an unfinished UTF-8 character are flushed when the length limit ends it mid-character.
  std::string rest;
  if (res.cancelled) rest = stop.flush() + dec.flush();
  else if (res.reason == FinishReason::Length || res.reason == FinishReason::ContextFull) rest = dec.flush();
  if (!rest.empty()) {
    res.text += rest;
    on_text(rest);
  }
  res.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return res;
}

}  // namespace ferrum
