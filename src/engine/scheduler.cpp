#include "engine/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <future>

namespace ferrum {

using Clock = std::chrono::steady_clock;

// ---- RequestHandle ----

RequestHandle::Update RequestHandle::wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return done_ || !pending_.empty(); });
  Update u;
  u.text = std::move(pending_);
  pending_.clear();
  u.done = done_;
  u.reason = reason_;
  u.cancelled = was_cancelled_;
  u.error = error_;
  u.prompt_tokens = prompt_tokens_;
  u.completion_tokens = completion_tokens_;
  return u;
}

void RequestHandle::push(std::string_view text, int64_t completion_tokens) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ += text;
    completion_tokens_ = completion_tokens;
  }
  if (!text.empty()) cv_.notify_all();
}

void RequestHandle::finish(FinishReason reason, bool cancelled, Status error, std::string_view tail) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ += tail;
    done_ = true;
    reason_ = reason;
    was_cancelled_ = cancelled;
    error_ = std::move(error);
  }
  cv_.notify_all();
}

// ---- Scheduler ----

struct Scheduler::Active {
  std::shared_ptr<RequestHandle> handle;
  Sampler sampler;
  StopChecker stop;
  StreamDecoder decoder;
  std::vector<int32_t> tokens;  // prompt + generated
  int64_t n_prompt = 0;
  int64_t computed = 0;  // leading tokens whose K/V are in the cache
  int64_t seq = -1;      // runtime sequence while admitted
  Clock::time_point arrival, last_token;
  bool has_token = false;
  bool done = false;
};

struct Scheduler::EmbedJob {
  std::vector<std::vector<int32_t>> inputs;
  Runtime::EmbedOptions options;
  std::promise<Result<std::vector<std::vector<float>>>> result;
};

Scheduler::Scheduler(Runtime& rt, const Tokenizer* tok, SchedulerConfig cfg) : rt_(rt), tok_(tok), cfg_(cfg) {
  context_ = rt_.kv_capacity();
  max_seqs_ = rt_.runtime_config().max_seqs;
  step_tokens_ = rt_.max_step_tokens();
  step_outputs_ = rt_.max_step_outputs();
  if (tok_) eos_ids_ = end_of_generation_ids(*tok_, rt_.config());
  kv_free_ = rt_.kv_free_blocks();
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { drain(std::chrono::milliseconds(0)); }

int64_t Scheduler::blocks_for(int64_t tokens) const {
  const int64_t b = rt_.kv_block_tokens();
  return (tokens + b - 1) / b;
}

SubmitResult Scheduler::submit(GenerationRequest req) {
  auto invalid = [&](std::string msg) {
    metrics_.rejected.fetch_add(1);
    return SubmitResult{nullptr, Rejection::Invalid, Error(std::move(msg))};
  };
  if (!rt_.causal() || !tok_)
    return invalid("the model is an encoder (embeddings only); it cannot generate text");
  const auto n_prompt = static_cast<int64_t>(req.prompt.size());
  if (n_prompt == 0) return invalid("the prompt is empty");
  const int64_t vocab = rt_.config().vocab_size;
  for (int32_t t : req.prompt)
    if (t < 0 || t >= vocab)
      return invalid(fmt::format("token id {} is outside the vocabulary [0, {})", t, vocab));
  const int64_t max_new = req.options.max_tokens;
  if (n_prompt >= context_)
    return invalid(
        fmt::format("the prompt has {} tokens but the context holds {} (prompt and at least one "
                    "generated token); shorten the prompt",
                    n_prompt, context_));
  if (max_new > 0 && n_prompt + max_new > context_)
    return invalid(
        fmt::format("the context holds {} tokens, but {} were requested ({} in the prompt, {} for the "
                    "completion); reduce the prompt or max_tokens",
                    context_, n_prompt + max_new, n_prompt, max_new));
  const int64_t most = max_new > 0 ? n_prompt + max_new : context_;
  if (blocks_for(most) > rt_.kv_total_blocks())
    return invalid(fmt::format("{} tokens need {} KV blocks but the pool has {}; reduce max_tokens", most,
                               blocks_for(most), rt_.kv_total_blocks()));

  auto sampler = Sampler::create(req.options.sampling, static_cast<int32_t>(vocab));
  if (!sampler.ok()) return invalid(sampler.status().message());
  if (Status st = sampler->add_prompt(req.prompt); !st.ok()) return invalid(st.message());
  StopConfig sc;
  if (!req.options.ignore_eos) sc.eos_ids = eos_ids_;
  sc.stop_strings = req.options.stop;
  sc.max_tokens = req.options.max_tokens;
  sc.context_limit = static_cast<int32_t>(context_);
  sc.prompt_tokens = static_cast<int32_t>(n_prompt);
  auto stop = StopChecker::create(sc);
  if (!stop.ok()) return invalid(stop.status().message());

  auto handle = std::shared_ptr<RequestHandle>(new RequestHandle(req.id, n_prompt));
  auto a =
      std::unique_ptr<Active>(new Active{handle, std::move(sampler).value(), std::move(stop).value(),
                                         StreamDecoder(*tok_, /*skip_special=*/true), std::move(req.prompt),
                                         n_prompt, 0, -1, Clock::now(), Clock::now(), false, false});
  // Primed with the last prompt token so the first piece keeps its leading space as a whole decode
  // would; that token's own text is not emitted.
  (void)a->decoder.step(a->tokens.back());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_) {
      metrics_.rejected.fetch_add(1);
      return {nullptr, Rejection::ShuttingDown, Error("the server is shutting down")};
    }
    if (static_cast<int64_t>(waiting_.size()) >= cfg_.max_queue) {
      metrics_.rejected.fetch_add(1);
      return {nullptr, Rejection::QueueFull,
              Error(fmt::format("the queue is full ({} requests waiting); retry later", waiting_.size()))};
    }
    waiting_.push_back(std::move(a));
  }
  metrics_.prompt_tokens.fetch_add(static_cast<uint64_t>(n_prompt));
  cv_.notify_all();
  return {handle, Rejection::None, Status()};
}

Result<std::vector<std::vector<float>>> Scheduler::embed(std::vector<std::vector<int32_t>> inputs,
                                                         Runtime::EmbedOptions opt) {
  if (rt_.causal()) return Error("the model is a decoder; embeddings need an encoder model (BERT)");
  auto job = std::make_shared<EmbedJob>();
  job->inputs = std::move(inputs);
  job->options = opt;
  auto fut = job->result.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_) return Error("the server is shutting down");
    embeds_.push_back(job);
  }
  cv_.notify_all();
  return fut.get();
}

void Scheduler::drain(std::chrono::milliseconds grace) {
  const auto deadline = Clock::now() + grace;
  std::unique_lock<std::mutex> lock(mu_);
  accepting_ = false;
  auto idle = [&] { return waiting_.empty() && embeds_.empty() && running_count_ == 0; };
  while (!idle() && Clock::now() < deadline)
    cv_.wait_until(lock, std::min(deadline, Clock::now() + std::chrono::milliseconds(20)));
  if (!idle()) {
    for (auto& w : waiting_) w->handle->cancel();
    cancel_all_.store(true);
  }
  stop_ = true;
  lock.unlock();
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::loop() {
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_ && waiting_.empty() && embeds_.empty() && running_.empty()) break;
    }
    if (!run_step()) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(50),
                   [&] { return stop_ || !waiting_.empty() || !embeds_.empty(); });
    }
  }
  publish_gauges();
}

void Scheduler::publish_gauges() {
  int64_t alloc = 0, used = 0;
  for (const auto& a : running_) {
    alloc += rt_.kv_seq_blocks(a->seq) * rt_.kv_block_tokens();
    used += a->computed;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_count_ = static_cast<int64_t>(running_.size());
    kv_free_ = rt_.kv_free_blocks();
    kv_alloc_tokens_ = alloc;
    kv_used_tokens_ = used;
  }
  cv_.notify_all();  // drain() waits for the running count to reach zero
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  s.finished = metrics_.finished.load();
  s.cancelled = metrics_.cancelled.load();
  s.failed = metrics_.failed.load();
  s.rejected = metrics_.rejected.load();
  s.preemptions = metrics_.preemptions.load();
  s.prompt_tokens = metrics_.prompt_tokens.load();
  s.generation_tokens = metrics_.generation_tokens.load();
  s.steps = metrics_.steps.load();
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.queue_depth = static_cast<int64_t>(waiting_.size());
    s.running = running_count_;
    s.kv_blocks_free = kv_free_;
    s.kv_tokens_allocated = kv_alloc_tokens_;
    s.kv_tokens_used = kv_used_tokens_;
  }
  s.kv_blocks_total = rt_.kv_total_blocks();
  s.ttft = metrics_.ttft.snapshot();
  s.itl = metrics_.itl.snapshot();
  return s;
}

void Scheduler::finish(Active& a, FinishReason reason, bool cancelled, Status error) {
  // Held-back text is final when generation is cut short; bytes of an unfinished UTF-8 character
  // are flushed when a length limit ends it mid-character (as Conversation::generate does).
  std::string tail;
  if (cancelled)
    tail = a.stop.flush() + a.decoder.flush();
  else if (reason == FinishReason::Length || reason == FinishReason::ContextFull)
    tail = a.decoder.flush();
  if (a.seq >= 0) rt_.release(a.seq);
  a.seq = -1;
  a.done = true;
  if (!error.ok())
    metrics_.failed.fetch_add(1);
  else if (cancelled)
    metrics_.cancelled.fetch_add(1);
  else
    metrics_.finished.fetch_add(1);
  a.handle->finish(reason, cancelled, std::move(error), tail);
}

void Scheduler::preempt(size_t index) {
  std::unique_ptr<Active> a = std::move(running_[index]);
  running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(index));
  rt_.release(a->seq);
  a->seq = -1;
  a->computed = 0;
  metrics_.preemptions.fetch_add(1);
  std::lock_guard<std::mutex> lock(mu_);
  waiting_.push_front(std::move(a));
}

void Scheduler::admit() {
  std::lock_guard<std::mutex> lock(mu_);
  while (!waiting_.empty()) {
    Active& a = *waiting_.front();
    if (a.handle->cancelled() || cancel_all_.load()) {
      finish(a, FinishReason::None, true, Status());
      waiting_.pop_front();
      continue;
    }
    if (static_cast<int64_t>(running_.size()) >= max_seqs_) break;
    // Room for the whole prompt now, and one block of growth for each running sequence.
    const int64_t need =
        blocks_for(static_cast<int64_t>(a.tokens.size()) + 1) + static_cast<int64_t>(running_.size());
    if (need > rt_.kv_free_blocks() && !running_.empty()) break;
    a.seq = next_seq_++;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    running_count_ = static_cast<int64_t>(running_.size());
  }
}

bool Scheduler::run_step() {
  std::deque<std::shared_ptr<EmbedJob>> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs.swap(embeds_);
  }
  for (auto& job : jobs) job->result.set_value(rt_.embed_batch(job->inputs, job->options));

  for (auto& a : running_)
    if (a->handle->cancelled() || cancel_all_.load()) finish(*a, FinishReason::None, true, Status());
  std::erase_if(running_, [](const auto& a) { return a->done; });
  admit();
  if (running_.empty()) {
    publish_gauges();
    return !jobs.empty();
  }

  // Plan: the next token of every sequence that is generating, then prompt chunks (oldest first)
  // within the token budget. If the KV pool cannot hold the plan, preempt the youngest sequence
  // and plan again.
  std::vector<Runtime::Work> work;
  std::vector<Active*> owners;
  while (true) {
    work.clear();
    owners.clear();
    int64_t budget = step_tokens_, need = 0;
    auto add = [&](Active& a, int64_t n) {
      work.push_back({a.seq,
                      std::span<const int32_t>(a.tokens).subspan(static_cast<size_t>(a.computed),
                                                                 static_cast<size_t>(n)),
                      a.computed, false});
      owners.push_back(&a);
      budget -= n;
      need += std::max<int64_t>(0, blocks_for(a.computed + n) - rt_.kv_seq_blocks(a.seq));
    };
    for (auto& a : running_) {
      const auto pending = static_cast<int64_t>(a->tokens.size()) - a->computed;
      if (pending == 1 && budget > 0 && static_cast<int64_t>(work.size()) < step_outputs_) add(*a, 1);
    }
    for (auto& a : running_) {
      const auto pending = static_cast<int64_t>(a->tokens.size()) - a->computed;
      if (pending > 1 && budget > 0 && static_cast<int64_t>(work.size()) < step_outputs_)
        add(*a, std::min(pending, budget));
    }
    if (need <= rt_.kv_free_blocks() || running_.size() == 1) break;
    preempt(running_.size() - 1);
  }

  // A row samples when its sequence's last pending token is in the step. When every such row is
  // greedy, the backend picks the tokens where the logits are and only ids come back.
  const auto samples = [&](size_t i) {
    return owners[i]->computed + static_cast<int64_t>(work[i].tokens.size()) ==
           static_cast<int64_t>(owners[i]->tokens.size());
  };
  bool any_sampled = false, greedy = true;
  for (size_t i = 0; i < owners.size(); ++i) {
    if (!samples(i)) continue;
    any_sampled = true;
    greedy = greedy && owners[i]->sampler.greedy_only();
  }
  greedy = greedy && any_sampled;
  Result<LogitsView> lv = LogitsView{};
  Result<std::span<const int32_t>> ids = std::span<const int32_t>{};
  if (greedy)
    ids = rt_.step_greedy(work);
  else
    lv = rt_.step(work);
  metrics_.steps.fetch_add(1);
  if (const Status& st = greedy ? ids.status() : lv.status(); !st.ok()) {
    // Not expected (inputs were validated, KV was planned): fail this step's requests, keep serving.
    for (Active* a : owners)
      finish(*a, FinishReason::None, false, st.with_context("request " + a->handle->id()));
    std::erase_if(running_, [](const auto& a) { return a->done; });
    publish_gauges();
    return true;
  }
  const auto now = Clock::now();
  for (size_t i = 0; i < owners.size(); ++i) {
    Active& a = *owners[i];
    const bool sampled = samples(i);
    a.computed += static_cast<int64_t>(work[i].tokens.size());
    if (!sampled) continue;  // a prompt chunk
    Result<int32_t> next = 0;
    if (greedy) {
      next = (*ids)[i];
      if (next.value() < 0)
        next = Error("greedy decoding: the largest logit is not finite (NaN, +inf, or every logit -inf)");
      else
        a.sampler.accept(next.value());
    } else {
      scratch_logits_.assign(lv->row(static_cast<int64_t>(i)), lv->row(static_cast<int64_t>(i)) + lv->vocab);
      next = a.sampler.sample(scratch_logits_);
    }
    if (!next.ok()) {
      finish(a, FinishReason::None, false, next.status().with_context("request " + a.handle->id()));
      continue;
    }
    a.tokens.push_back(next.value());
    metrics_.generation_tokens.fetch_add(1);
    if (a.has_token)
      metrics_.itl.observe(std::chrono::duration<double>(now - a.last_token).count());
    else
      metrics_.ttft.observe(std::chrono::duration<double>(now - a.arrival).count());
    a.has_token = true;
    a.last_token = now;
    StopResult sr = a.stop.on_token(next.value(), a.decoder.step(next.value()));
    a.handle->push(sr.emit, static_cast<int64_t>(a.tokens.size()) - a.n_prompt);
    if (sr.stopped) finish(a, sr.reason, false, Status());
  }
  std::erase_if(running_, [](const auto& a) { return a->done; });
  publish_gauges();
  return true;
}

}  // namespace ferrum
