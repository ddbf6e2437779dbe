// The continuous-batching scheduler: outputs are bit-identical alone and batched (also with prompt
// chunks in the same step and with preemption under KV pressure), cancelled and finished requests
// return every KV block, and bad requests are rejected without disturbing the others.
#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "device_util.h"
#include "test_util.h"

namespace ferrum::testing {
namespace {

struct Loaded {
  std::unique_ptr<Runtime> rt;
  std::unique_ptr<Tokenizer> tok;
};

std::string backend() {
  auto env = RuntimeConfig::from_env();
  return env.ok() ? env->backend : "cpu";
}

// A test model: a file under the shared data, or "generated/NAME", written by the make_moe_test_model
// step into FERRUM_GENERATED_MODELS.
std::string model_path(const std::string& rel) {
  const std::string generated = "generated/";
  if (rel.rfind(generated, 0) == 0)
    return std::string(FERRUM_GENERATED_MODELS) + "/" + rel.substr(generated.size());
  return shared_path(rel);
}

Loaded load(const std::string& rel, int64_t max_seqs, int64_t kv_blocks, int64_t step_tokens,
            int64_t ctx = 512) {
  RuntimeConfig cfg;
  cfg.backend = backend();
  cfg.max_seqs = max_seqs;
  cfg.kv_blocks = kv_blocks;
  cfg.max_batch_tokens = step_tokens;
  cfg.kv_capacity = ctx;
  cfg.threads = 1;  // the outputs do not depend on it; one thread keeps the test quick on a busy machine
  Loaded l;
  auto rt = Runtime::load(model_path(rel), cfg);
  EXPECT_TRUE(rt.ok()) << rt.status().message();
  auto tok = Tokenizer::load(model_path(rel));
  EXPECT_TRUE(tok.ok()) << tok.status().message();
  if (rt.ok() && tok.ok()) {
    l.rt = std::move(rt).value();
    l.tok = std::move(tok).value();
  }
  return l;
}

// Request i: a prompt of a length that varies (so prompts are chunked across steps at different
// offsets), greedy or seeded sampling, a fixed number of tokens.
GenerationRequest request(int i, int32_t vocab) {
  GenerationRequest r;
  r.id = "r" + std::to_string(i);
  const int n = 1 + (i * 37) % 90;
  for (int k = 0; k < n; ++k) r.prompt.push_back(1 + (i * 131 + k * 17) % (vocab - 1));
  r.options.max_tokens = 24 + i % 5;
  r.options.ignore_eos = true;
  if (i % 2 == 0) {
    r.options.sampling.temperature = 0.0f;
  } else {
    r.options.sampling.temperature = 0.9f;
    r.options.sampling.top_k = 40;
    r.options.sampling.seed = 1000 + static_cast<uint64_t>(i);
  }
  return r;
}

struct Output {
  std::string text;
  RequestHandle::Update last;
};

Output collect(const std::shared_ptr<RequestHandle>& h) {
  Output o;
  do {
    o.last = h->wait(std::chrono::milliseconds(1000));
    o.text += o.last.text;
  } while (!o.last.done);
  return o;
}

void wait_idle(Scheduler& s) {
  for (int i = 0; i < 200; ++i) {
    SchedulerStats st = s.stats();
    if (st.running == 0 && st.queue_depth == 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

class Batching : public ::testing::TestWithParam<std::string> {};

TEST_P(Batching, OutputsAreIdenticalAloneAndBatched) {
  const std::string model = GetParam();
  if (!std::filesystem::exists(model_path(model))) GTEST_SKIP() << "missing " << model_path(model);
  FERRUM_SKIP_WITHOUT_DEVICE(backend());
  constexpr int kRequests = 16;
  // Alone: one request at a time.
  std::vector<std::string> alone;
  {
    Loaded l = load(model, 16, 0, 64);
    ASSERT_TRUE(l.rt);
    Scheduler s(*l.rt, l.tok.get(), {});
    for (int i = 0; i < kRequests; ++i) {
      SubmitResult sub = s.submit(request(i, static_cast<int32_t>(l.rt->config().vocab_size)));
      ASSERT_TRUE(sub.handle) << sub.error.message();
      Output o = collect(sub.handle);
      ASSERT_TRUE(o.last.error.ok()) << o.last.error.message();
      EXPECT_EQ(o.last.reason, FinishReason::Length);
      EXPECT_EQ(o.last.completion_tokens, request(i, 2).options.max_tokens);
      alone.push_back(o.text);
    }
  }
  // Together: all submitted at once; a 64-token step budget mixes prompt chunks with decodes.
  // Then again with a KV pool too small for all of them, so sequences are preempted and recomputed.
  for (int64_t kv_blocks : {int64_t{0}, int64_t{24}}) {
    SCOPED_TRACE(kv_blocks ? "small KV pool" : "ample KV pool");
    Loaded l = load(model, 16, kv_blocks, 64);
    ASSERT_TRUE(l.rt);
    Scheduler s(*l.rt, l.tok.get(), {});
    std::vector<std::shared_ptr<RequestHandle>> handles;
    for (int i = 0; i < kRequests; ++i) {
      SubmitResult sub = s.submit(request(i, static_cast<int32_t>(l.rt->config().vocab_size)));
      ASSERT_TRUE(sub.handle) << sub.error.message();
      handles.push_back(sub.handle);
    }
    for (int i = 0; i < kRequests; ++i) {
      Output o = collect(handles[static_cast<size_t>(i)]);
      ASSERT_TRUE(o.last.error.ok()) << o.last.error.message();
      EXPECT_EQ(o.text, alone[static_cast<size_t>(i)]) << "request " << i;
    }
    wait_idle(s);
    SchedulerStats st = s.stats();
    EXPECT_EQ(st.kv_blocks_free, st.kv_blocks_total);
    EXPECT_EQ(st.finished, static_cast<uint64_t>(kRequests));
    if (kv_blocks) {
      EXPECT_GT(st.preemptions, 0u);
    }
  }
}

std::string batching_name(size_t index) {
  static const char* const kNames[] = {"f32", "q4_k_m", "moe_q4_k_m"};
  return kNames[index];
}

// F32 weights, a Q4_K/Q6_K mix whose activations are quantized per token, and a Qwen3-MoE Q4_K_M model
// (16 experts, top-4: steps group different numbers of tokens per expert).
INSTANTIATE_TEST_SUITE_P(Models, Batching,
                         ::testing::Values("models/stories260K.gguf",
                                           "fixtures/gguf/synth/synth-llama-q4_k_m-mix.gguf",
                                           "generated/moe-tiny-q4_k_m.gguf"),
                         [](const auto& info) { return batching_name(info.index); });

TEST(Scheduler, CancelledRequestsFreeTheirBlocks) {
  const std::string model = "models/stories260K.gguf";
  FERRUM_REQUIRE_SHARED(model);
  FERRUM_SKIP_WITHOUT_DEVICE(backend());
  Loaded l = load(model, 4, 0, 64);
  ASSERT_TRUE(l.rt);
  Scheduler s(*l.rt, l.tok.get(), {});
  std::vector<std::shared_ptr<RequestHandle>> handles;
  for (int i = 0; i < 8; ++i) {  // more than max_seqs: some are cancelled while still queued
    GenerationRequest r = request(i, 512);
    r.options.max_tokens = 400;
    SubmitResult sub = s.submit(std::move(r));
    ASSERT_TRUE(sub.handle);
    handles.push_back(sub.handle);
  }
  (void)handles[0]->wait(std::chrono::milliseconds(2000));  // the first has started generating
  for (auto& h : handles) h->cancel();
  for (auto& h : handles) {
    Output o = collect(h);
    EXPECT_TRUE(o.last.cancelled);
  }
  wait_idle(s);
  SchedulerStats st = s.stats();
  EXPECT_EQ(st.kv_blocks_free, st.kv_blocks_total);
  EXPECT_EQ(st.cancelled, 8u);
  EXPECT_EQ(st.running, 0);
}

TEST(Scheduler, RejectsBadRequestsAndKeepsServing) {
  const std::string model = "models/stories260K.gguf";
  FERRUM_REQUIRE_SHARED(model);
  FERRUM_SKIP_WITHOUT_DEVICE(backend());
  Loaded l = load(model, 4, 0, 64, /*ctx=*/128);
  ASSERT_TRUE(l.rt);
  SchedulerConfig cfg;
  cfg.max_queue = 2;
  Scheduler s(*l.rt, l.tok.get(), cfg);
  auto reject = [&](GenerationRequest r, Rejection want, const std::string& words) {
    SubmitResult sub = s.submit(std::move(r));
    EXPECT_FALSE(sub.handle);
    EXPECT_EQ(sub.rejection, want);
    EXPECT_NE(sub.error.message().find(words), std::string::npos) << sub.error.message();
  };
  GenerationRequest empty = request(0, 512);
  empty.prompt.clear();
  reject(empty, Rejection::Invalid, "empty");
  GenerationRequest bad_id = request(0, 512);
  bad_id.prompt[0] = 512;
  reject(bad_id, Rejection::Invalid, "outside the vocabulary");
  GenerationRequest too_long = request(0, 512);
  too_long.prompt.assign(128, 5);
  reject(too_long, Rejection::Invalid, "context");
  GenerationRequest too_many = request(0, 512);
  too_many.options.max_tokens = 200;
  reject(too_many, Rejection::Invalid, "max_tokens");
  GenerationRequest bad_sampling = request(0, 512);
  bad_sampling.options.sampling.top_p = 2.0f;
  EXPECT_EQ(s.submit(bad_sampling).rejection, Rejection::Invalid);

  // Fill the queue past max_queue: long requests occupy the sequences, the queue takes two more.
  std::vector<std::shared_ptr<RequestHandle>> held;
  Rejection last = Rejection::None;
  for (int i = 0; i < 12 && last == Rejection::None; ++i) {
    GenerationRequest r = request(2 * i, 512);
    r.prompt.resize(4);
    r.options.max_tokens = 100;
    SubmitResult sub = s.submit(std::move(r));
    last = sub.rejection;
    if (sub.handle) held.push_back(sub.handle);
  }
  EXPECT_EQ(last, Rejection::QueueFull);
  for (auto& h : held) h->cancel();
  for (auto& h : held) (void)collect(h);

  // Still serving.
  SubmitResult ok = s.submit(request(2, 512));
  ASSERT_TRUE(ok.handle);
  Output o = collect(ok.handle);
  EXPECT_TRUE(o.last.error.ok());
  EXPECT_EQ(o.last.reason, FinishReason::Length);
}

}  // namespace
}  // namespace ferrum::testing
