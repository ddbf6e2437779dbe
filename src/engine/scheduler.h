// Continuous batching: one thread owns the Runtime and runs it step after step. Each step carries
// the next token of every running sequence plus chunks of prompts still being prefilled, up to a
// token budget, so weights are read once per step for all of them (iteration-level batching, as in
// Orca / vLLM). Requests arrive from any thread through submit(); their text streams back through a
// RequestHandle.
//
// KV memory: sequences take blocks as they grow. A request is admitted (FCFS) when the pool has
// blocks for its prompt plus one block per running sequence in reserve; when a running sequence
// needs a block and none is free, the most recently admitted sequence is preempted: its blocks go
// back to the pool and it returns to the head of the queue, to be recomputed from its prompt and the
// tokens it already generated (vLLM's recompute preemption). Its sampler state is kept, so the
// output is the same as if it had never been preempted.
//
// Determinism: a sequence's logits do not depend on what else is in the step (the backends compute
// each row with a fixed reduction order), and each request samples from its own seeded RNG, so an
// output is the same alone or batched. In steps where every sampled request is greedy the backend
// picks the tokens (Runtime::step_greedy: the same argmax, without copying logits to the host).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/generate.h"
#include "engine/metrics.h"
#include "ferrum/runtime.h"
#include "tokenizer/tokenizer.h"

namespace ferrum {

struct SchedulerConfig {
  int64_t max_queue = 256;  // waiting requests; more are rejected (HTTP 429)
};

struct GenerationRequest {
  std::string id;  // for logs and error messages
  std::vector<int32_t> prompt;
  GenerateOptions options;  // max_tokens 0: until EOS or the context is full
};

// Why submit() refused a request.
enum class Rejection { None, Invalid, QueueFull, ShuttingDown };

// The consumer's side of one request. The scheduler thread appends text; the consumer takes it.
class RequestHandle {
 public:
  struct Update {
    std::string text;  // text that became final since the last take
    bool done = false;
    FinishReason reason = FinishReason::None;
    bool cancelled = false;
    Status error;  // not ok when the request failed after admission
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;  // generated so far
  };
  // Waits up to `timeout` for news, then takes it.
  Update wait(std::chrono::milliseconds timeout);
  // The consumer has gone (client disconnected): the sequence is freed at the next step.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  const std::string& id() const { return id_; }

 private:
  friend class Scheduler;
  explicit RequestHandle(std::string id, int64_t prompt_tokens)
      : id_(std::move(id)), prompt_tokens_(prompt_tokens) {}
  void push(std::string_view text, int64_t completion_tokens);
  void finish(FinishReason reason, bool cancelled, Status error, std::string_view tail);

  std::string id_;
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::string pending_;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
  bool done_ = false, was_cancelled_ = false;
  FinishReason reason_ = FinishReason::None;
  Status error_;
};

struct SubmitResult {
  std::shared_ptr<RequestHandle> handle;  // null when rejected
  Rejection rejection = Rejection::None;
  Status error;
};

class Scheduler {
 public:
  // `rt` and `tok` must outlive the scheduler; `tok` may be null for an encoder (embeddings only).
  // Its thread starts here.
  Scheduler(Runtime& rt, const Tokenizer* tok, SchedulerConfig cfg);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Validates and queues a generation. Invalid: empty prompt, ids outside the vocabulary, prompt +
  // max_tokens over the context or the whole KV pool, bad sampling parameters.
  SubmitResult submit(GenerationRequest req);

  // Runs an encoder (embeddings) on the scheduler thread, between steps; blocks the caller.
  Result<std::vector<std::vector<float>>> embed(std::vector<std::vector<int32_t>> inputs,
                                                Runtime::EmbedOptions opt);

  // Stops admitting requests (submit → ShuttingDown), lets running and queued ones finish for up to
  // `grace`, cancels the rest, and returns when none is left.
  void drain(std::chrono::milliseconds grace);

  SchedulerStats stats() const;
  // Counts a request the server refused before submitting it (bad JSON, unknown model, ...).
  void note_rejected() { metrics_.rejected.fetch_add(1); }
  int64_t context_size() const { return context_; }

 private:
  struct Active;
  struct EmbedJob;
  void loop();
  // One iteration; false when there was nothing to do.
  bool run_step();
  void admit();
  void publish_gauges();
  void finish(Active& a, FinishReason reason, bool cancelled, Status error);
  void preempt(size_t index);
  int64_t blocks_for(int64_t tokens) const;

  Runtime& rt_;
  const Tokenizer* tok_;
  SchedulerConfig cfg_;
  int64_t context_ = 0, max_seqs_ = 0, step_tokens_ = 0, step_outputs_ = 0;
  std::vector<int32_t> eos_ids_;

  mutable std::mutex mu_;  // guards waiting_, embeds_, accepting_, stop_ and the stats gauges
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Active>> waiting_;
  std::deque<std::shared_ptr<EmbedJob>> embeds_;
  bool accepting_ = true, stop_ = false;
  std::atomic<bool> cancel_all_{false};  // set by drain() when the grace period ends
  // Gauges published by the scheduler thread after each iteration (under mu_).
  int64_t running_count_ = 0, kv_free_ = 0, kv_alloc_tokens_ = 0, kv_used_tokens_ = 0;
  std::vector<std::unique_ptr<Active>> running_;  // scheduler thread only, in admission order
  int64_t next_seq_ = 0;
  std::vector<float> scratch_logits_;
  SchedulerMetrics metrics_;
  std::thread thread_;
};

}  // namespace ferrum
