// Token sampling: a fixed pipeline of small logit processors, configured by SamplingParams.
//
// Order, as llama.cpp's default chain (common/sampling.cpp: logit bias first, then the default
// `samplers` list penalties → top-k → top-p → min-p → temperature, then dist):
//   logit bias → repetition penalty → presence/frequency penalty → top-k → top-p → min-p
//   → temperature → seeded draw.
// So top-k/top-p/min-p truncate the temperature-1 distribution and temperature only reshapes the
// survivors. (HF transformers applies temperature before top-k/top-p; the two differ whenever
// temperature != 1 and top-p < 1.) temperature == 0 is greedy: argmax, lowest id on ties, no draw.
//
// Determinism: the draw uses std::mt19937_64 (its output sequence is fixed by the standard), our own
// conversion to a double in [0, 1), and our own exp (libm expf differs between C libraries), with a
// summation order that does not depend on the vector width (sampler_simd.h), so the same seed,
// parameters and logits give the same tokens on every IEEE-754 platform and instruction set.
//
// Speed: the vocabulary (150k entries) is never sorted or copied. One vectorized scan finds the
// maximum of every 64-token block; top-k keeps a k-heap and skips blocks that cannot enter it; top-p
// sums the distribution in one vectorized exp pass, then looks for the nucleus among the tokens
// within 4 nats of the top, or (flat distributions) in the 1/8-nat bucket of a mass histogram where
// the cumulative mass crosses p, by a quickselect on mass (expected linear). bench/sampler times it.
#pragma once

#include <array>
#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ferrum/status.h"

namespace ferrum {

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy
  int32_t top_k = 0;         // <= 0: off
  float top_p = 1.0f;        // nucleus mass in (0, 1]; 1: off
  float min_p = 0.0f;        // keep p >= min_p * p_max; 0: off
  // llama.cpp / HF repetition penalty over the last repeat_last_n tokens of prompt + generated text
  // (0: none, -1: all of them).
  float repeat_penalty = 1.0f;
  int32_t repeat_last_n = 64;
  // OpenAI semantics, counted over every token this Sampler has generated (not the prompt, no window):
  // logit -= presence_penalty * (count > 0) + frequency_penalty * count.
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to raw logits; -inf bans a token
  uint64_t seed = 0;

  // Checks ranges; `vocab_size` bounds the logit_bias ids.
  Status validate(int32_t vocab_size) const;
};

// exp(x) for x <= 0 (x < -87 gives 0), from basic float operations only, so its bits are the same on
// every IEEE-754 platform; within 2 ulp of the exact value. (sampler_simd.h has the definition.)
float portable_exp(float x);

// A double uniform in [0, 1) from the top 53 bits of one draw (std::uniform_real_distribution's
// algorithm is left to each standard library).
double uniform01(std::mt19937_64& rng);

struct TokenLogit {
  int32_t id;
  float logit;
};

// Best first: higher logit, then lower id. A strict total order, so every sort and heap is
// deterministic.
inline bool better(const TokenLogit& a, const TokenLogit& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// The tokens still in play, with probabilities ∝ exp((logit - max_logit) * scale). It starts as the
// whole vocabulary read in place from the logits; the first truncation turns it into a list.
// Truncations always keep the best token, so max_logit never changes.
class CandidateSet {
 public:
  static constexpr int kBlock = 64;  // = sampler_simd::kBlock

  // Fails on empty logits, a NaN or +inf logit, or all -inf. `logits` must outlive the set's use.
  Status reset(std::span<const float> logits);

  bool full() const { return full_; }
  size_t size() const { return full_ ? logits_.size() : list_.size(); }
  std::span<const float> logits() const { return logits_; }
  float max_logit() const { return max_; }
  // Maximum of each kBlock-sized block of the vocabulary (the last one may be shorter).
  const std::vector<float>& block_max() const { return block_max_; }
  // Block b's kBlock logits; the short last block is padded with -inf.
  const float* block(size_t b) const;
  // For a full set: fills block_mass() with each block's probability mass (unnormalized: the best
  // token weighs 1) and returns the total.
  double compute_block_mass();
  const std::vector<double>& block_mass() const { return block_mass_; }
  float scale() const { return scale_; }
  void set_scale(float s) { scale_ = s; }

  // The explicit list; valid when !full(). `sorted` says whether it is in `better` order.
  std::vector<TokenLogit>& list() { return list_; }
  const std::vector<TokenLogit>& list() const { return list_; }
  bool sorted() const { return sorted_; }
  // Switches to the list; the caller has just filled list() (it may reuse its storage).
  void use_list(bool sorted) {
    full_ = false;
    sorted_ = sorted;
  }
  // Scratch for draw(): the list's weights.
  std::vector<float>& weights() { return weights_; }

  // The best candidate (lowest id among equal logits).
  int32_t argmax() const;

  // (id, probability) of every candidate in ascending id order: for tests and logprobs.
  std::vector<std::pair<int32_t, double>> probabilities() const;

 private:
  std::span<const float> logits_;
  std::vector<float> block_max_;
  std::vector<double> block_mass_;
  std::array<float, kBlock> tail_;  // the short last block, padded
  std::vector<TokenLogit> list_;
  std::vector<float> weights_;
  float max_ = 0.0f;
  float scale_ = 1.0f;
  bool full_ = true;
  bool sorted_ = false;
};

// Adds fixed per-token biases to the raw logits; repeated ids add up. Ids must be in range
// (SamplingParams::validate).
class LogitBias {
 public:
  explicit LogitBias(std::vector<std::pair<int32_t, float>> bias) : bias_(std::move(bias)) {}
  void apply(std::span<float> logits) const;

 private:
  std::vector<std::pair<int32_t, float>> bias_;
};

// Each distinct token among the last `last_n` of `history` (-1: all) has its logit divided by
// `penalty` if positive, multiplied by it otherwise.
class RepetitionPenalty {
 public:
  RepetitionPenalty(float penalty, int32_t last_n) : penalty_(penalty), last_n_(last_n) {}
  void apply(std::span<float> logits, std::span<const int32_t> history);

 private:
  float penalty_;
  int32_t last_n_;
  std::vector<bool> seen_;  // per-vocabulary marks, all false between calls
};

// logit -= presence * (count > 0) + frequency * count, for each token in `counts`.
class PresenceFrequencyPenalty {
 public:
  PresenceFrequencyPenalty(float presence, float frequency) : presence_(presence), frequency_(frequency) {}
  void apply(std::span<float> logits, const std::unordered_map<int32_t, int32_t>& counts) const;

 private:
  float presence_;
  float frequency_;
};

// Keeps the k best candidates (k <= 0: all).
class TopK {
 public:
  explicit TopK(int32_t k) : k_(k) {}
  void apply(CandidateSet& c) const;

 private:
  int32_t k_;
};

// Keeps the smallest best-first prefix whose probability mass reaches p (at least one token).
class TopP {
 public:
  explicit TopP(float p) : p_(p) {}
  void apply(CandidateSet& c) const;

 private:
  float p_;
};

// Keeps the candidates with probability >= p * (largest probability).
class MinP {
 public:
  explicit MinP(float p) : p_(p) {}
  void apply(CandidateSet& c) const;

 private:
  float p_;
};

// Divides the (remaining) logits by t > 0.
class Temperature {
 public:
  explicit Temperature(float t) : t_(t) {}
  void apply(CandidateSet& c) const;

 private:
  float t_;
};

// The candidate at which the cumulative probability (ascending id or list order) first exceeds u,
// u in [0, 1).
int32_t draw(CandidateSet& c, double u);

// Per-sequence sampling state (RNG, token history); one per request.
class Sampler {
 public:
  static Result<Sampler> create(SamplingParams params, int32_t vocab_size);

  // Tokens that precede generation (the prompt); they count for the repetition penalty only.
  Status add_prompt(std::span<const int32_t> tokens);
  // Picks the next token and records it as generated. `logits` (vocab_size entries) is used as
  // scratch: bias and penalties are applied to it in place.
  Result<int32_t> sample(std::span<float> logits);
  // Whether sample() is the plain argmax of the logits (temperature 0, no bias, no penalties), which a
  // backend can take where the logits are (Runtime::step_greedy); then accept() records its choice.
  bool greedy_only() const;
  void accept(int32_t token);

  const SamplingParams& params() const { return params_; }

 private:
  Sampler(SamplingParams params, int32_t vocab_size);

  SamplingParams params_;
  int32_t vocab_size_;
  std::mt19937_64 rng_;
  std::vector<int32_t> history_;                    // prompt + generated
  std::unordered_map<int32_t, int32_t> generated_;  // generated token → count
  LogitBias bias_;
  RepetitionPenalty repetition_;
  PresenceFrequencyPenalty presence_frequency_;
  TopK top_k_;
  TopP top_p_;
  MinP min_p_;
  Temperature temperature_;
  CandidateSet candidates_;
};

}  // namespace ferrum
