#include "engine/sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/sampler_simd.h"

namespace ferrum {

namespace {

using sampler_simd::exp_nonpositive;
using sampler_simd::kernels;
static_assert(CandidateSet::kBlock == sampler_simd::kBlock);

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int kBlock = CandidateSet::kBlock;

size_t num_blocks(size_t n) { return (n + kBlock - 1) / kBlock; }

inline float weight(const CandidateSet& c, float logit) {
  return exp_nonpositive((logit - c.max_logit()) * c.scale());
}

// Whether a block can hold a token with (logit - max) * scale >= threshold.
bool block_reaches(const CandidateSet& c, size_t b, float threshold) {
  return (c.block_max()[b] - c.max_logit()) * c.scale() >= threshold;
}

// Replaces a full set by its tokens with keep(x), x = (logit - max) * scale, in id order. Blocks
// whose maximum has x < floor hold no such token and are skipped. Gives up (returns false, the set
// left unusable) once more than `limit` tokens are kept.
template <class Keep>
bool collect(CandidateSet& c, float floor, Keep keep, size_t limit = SIZE_MAX) {
  auto& list = c.list();
  list.clear();
  const auto logits = c.logits();
  const float max = c.max_logit();
  const float scale = c.scale();
  for (size_t b = 0; b < c.block_max().size(); ++b) {
    if (!block_reaches(c, b, floor)) continue;
    const size_t end = std::min(logits.size(), (b + 1) * kBlock);
    for (size_t i = b * kBlock; i < end; ++i) {
      if (keep((logits[i] - max) * scale)) list.push_back({static_cast<int32_t>(i), logits[i]});
    }
    if (list.size() > limit) return false;
  }
  c.use_list(false);
  return true;
}

// Cuts the list to its smallest best-first prefix of mass >= target (all of it if it falls short),
// given that list[0, first) is better than the rest and weighs `above` < target. Sorted lists are
// scanned; otherwise the rest goes through a quickselect on mass (halving with nth_element, expected
// linear) and only the last <= 64 candidates are sorted.
void cut_prefix(CandidateSet& c, double target, size_t first = 0, double above = 0) {
  auto& list = c.list();
  size_t lo = first;  // list[0, lo) is better than list[lo, end) and weighs `above` < target
  size_t hi = list.size();
  if (!c.sorted()) {
    while (hi - lo > 64) {
      const size_t mid = lo + (hi - lo) / 2;
      std::nth_element(list.begin() + lo, list.begin() + mid, list.begin() + hi, better);
      double m = 0;
      for (size_t i = lo; i < mid; ++i) m += weight(c, list[i].logit);
      if (above + m >= target) {
        hi = mid;
      } else {
        above += m;
        lo = mid;
      }
    }
    std::sort(list.begin() + lo, list.begin() + hi, better);
  }
  for (size_t i = lo; i < hi; ++i) {
    above += weight(c, list[i].logit);
    if (above >= target) {
      hi = i + 1;
      break;
    }
  }
  list.resize(hi);
  c.use_list(c.sorted() || lo == 0);
}

}  // namespace

Status SamplingParams::validate(int32_t vocab_size) const {
  const auto bad = [](const std::string& what) { return Error("sampling parameters: " + what); };
  if (vocab_size <= 0) return bad(fmt::format("vocab_size {} must be positive", vocab_size));
  if (!(temperature >= 0 && temperature < kInf))
    return bad(fmt::format("temperature {} must be >= 0", temperature));
  if (!(top_p > 0 && top_p <= 1)) return bad(fmt::format("top_p {} must be in (0, 1]", top_p));
  if (!(min_p >= 0 && min_p <= 1)) return bad(fmt::format("min_p {} must be in [0, 1]", min_p));
  if (!(repeat_penalty > 0 && repeat_penalty < kInf)) {
    return bad(fmt::format("repeat_penalty {} must be > 0", repeat_penalty));
  }
  if (repeat_last_n < -1) return bad(fmt::format("repeat_last_n {} must be >= -1", repeat_last_n));
  if (!std::isfinite(presence_penalty)) return bad("presence_penalty must be finite");
  if (!std::isfinite(frequency_penalty)) return bad("frequency_penalty must be finite");
  for (const auto& [id, b] : logit_bias) {
    if (id < 0 || id >= vocab_size) {
      return bad(fmt::format("logit_bias token {} outside the vocabulary [0, {})", id, vocab_size));
    }
    if (!(b < kInf)) return bad(fmt::format("logit_bias for token {} must be < +inf and not NaN", id));
  }
  return {};
}

float portable_exp(float x) { return exp_nonpositive(x); }

double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

Status CandidateSet::reset(std::span<const float> logits) {
  if (logits.empty()) return Error("sampler: empty logits");
  logits_ = logits;
  list_.clear();
  full_ = true;
  sorted_ = false;
  scale_ = 1.0f;
  const size_t full_blocks = logits.size() / kBlock;
  block_max_.resize(num_blocks(logits.size()));
  bool nonfinite = false;
  kernels().block_max(logits.data(), full_blocks, block_max_.data(), &nonfinite);
  if (full_blocks < block_max_.size()) {
    tail_.fill(-kInf);
    std::copy(logits.begin() + full_blocks * kBlock, logits.end(), tail_.begin());
    kernels().block_max(tail_.data(), 1, &block_max_.back(), &nonfinite);
  }
  if (nonfinite) return Error("sampler: logits contain NaN or +inf");
  max_ = *std::max_element(block_max_.begin(), block_max_.end());
  if (max_ == -kInf) return Error("sampler: every logit is -inf");
  return {};
}

const float* CandidateSet::block(size_t b) const {
  return (b + 1) * kBlock <= logits_.size() ? logits_.data() + b * kBlock : tail_.data();
}

double CandidateSet::compute_block_mass() {
  const size_t full_blocks = logits_.size() / kBlock;
  block_mass_.resize(block_max_.size());
  kernels().block_mass(logits_.data(), full_blocks, block_max_.data(), max_, scale_, block_mass_.data());
  if (full_blocks < block_max_.size()) {
    kernels().block_mass(tail_.data(), 1, &block_max_.back(), max_, scale_, &block_mass_.back());
  }
  double z = 0;
  for (const double m : block_mass_) z += m;
  return z;
}

int32_t CandidateSet::argmax() const {
  if (!full_) return std::min_element(list_.begin(), list_.end(), better)->id;
  const size_t b = std::find(block_max_.begin(), block_max_.end(), max_) - block_max_.begin();
  const float* p = block(b);
  return static_cast<int32_t>(b * kBlock + (std::find(p, p + kBlock, max_) - p));
}

std::vector<std::pair<int32_t, double>> CandidateSet::probabilities() const {
  std::vector<std::pair<int32_t, double>> out;
  if (full_) {
    for (size_t i = 0; i < logits_.size(); ++i)
      out.emplace_back(static_cast<int32_t>(i), weight(*this, logits_[i]));
  } else {
    for (const auto& t : list_) out.emplace_back(t.id, weight(*this, t.logit));
  }
  double z = 0;
  for (const auto& e : out) z += e.second;
  for (auto& e : out) e.second /= z;
  std::sort(out.begin(), out.end());
  return out;
}

void LogitBias::apply(std::span<float> logits) const {
  for (const auto& [id, b] : bias_) logits[id] += b;
}

void RepetitionPenalty::apply(std::span<float> logits, std::span<const int32_t> history) {
  if (penalty_ == 1.0f || last_n_ == 0) return;
  if (last_n_ > 0 && history.size() > static_cast<size_t>(last_n_)) history = history.last(last_n_);
  if (seen_.size() != logits.size()) seen_.assign(logits.size(), false);
  for (const int32_t t : history) {
    if (seen_[t]) continue;
    seen_[t] = true;
    float& l = logits[t];
    l = l > 0 ? l / penalty_ : l * penalty_;
  }
  for (const int32_t t : history) seen_[t] = false;
}

void PresenceFrequencyPenalty::apply(std::span<float> logits,
                                     const std::unordered_map<int32_t, int32_t>& counts) const {
  if (presence_ == 0.0f && frequency_ == 0.0f) return;
  for (const auto& [id, n] : counts) {
    logits[id] -= static_cast<float>(n) * frequency_ + static_cast<float>(n > 0) * presence_;
  }
}

void TopK::apply(CandidateSet& c) const {
  if (k_ <= 0 || static_cast<size_t>(k_) >= c.size()) return;
  const size_t k = static_cast<size_t>(k_);
  auto& list = c.list();
  if (!c.full()) {
    if (!c.sorted()) std::partial_sort(list.begin(), list.begin() + k, list.end(), better);
    list.resize(k);
    c.use_list(true);
    return;
  }
  // A heap of the k best seen so far, worst on top. Ids grow during the scan, so a token that only
  // ties the worst loses to it, and a block whose maximum does not beat the worst is skipped whole.
  list.clear();
  const auto logits = c.logits();
  for (size_t b = 0; b < c.block_max().size(); ++b) {
    if (list.size() == k && !(c.block_max()[b] > list.front().logit)) continue;
    const size_t end = std::min(logits.size(), (b + 1) * kBlock);
    for (size_t i = b * kBlock; i < end; ++i) {
      const TokenLogit t{static_cast<int32_t>(i), logits[i]};
      if (list.size() < k) {
        list.push_back(t);
        std::push_heap(list.begin(), list.end(), better);
      } else if (t.logit > list.front().logit) {
        std::pop_heap(list.begin(), list.end(), better);
        list.back() = t;
        std::push_heap(list.begin(), list.end(), better);
      }
    }
  }
  std::sort_heap(list.begin(), list.end(), better);
  c.use_list(true);
}

void TopP::apply(CandidateSet& c) const {
  if (p_ >= 1.0f) return;
  if (!c.full()) {
    double z = 0;
    for (const auto& t : c.list()) z += weight(c, t.logit);
    cut_prefix(c, p_ * z);
    return;
  }
  // One vectorized exp pass for the total mass. A peaked distribution has its nucleus among the few
  // tokens within 4 nats of the top: try those first.
  const double target = p_ * c.compute_block_mass();
  const auto near_top = [](float x) { return x >= -4.0f; };
  if (collect(c, -4.0f, near_top, 4096)) {
    double mass = 0;
    for (const auto& t : c.list()) mass += weight(c, t.logit);
    if (mass >= target) {
      cut_prefix(c, target);
      return;
    }
  }
  // Flat: a histogram of mass over the top 20 nats in 1/8-nat buckets finds the bucket where the
  // cumulative mass crosses the target; better buckets are kept whole, only that one is searched.
  constexpr float kPerNat = 8.0f;
  constexpr float kSpan = 20.0f;
  constexpr int kBuckets = static_cast<int>(kSpan * kPerNat) + 1;
  const auto bucket = [](float x) { return static_cast<int>(-x * kPerNat); };  // x in [-kSpan, 0]
  std::array<double, kBuckets> hist{};
  for (size_t b = 0; b < c.block_max().size(); ++b) {
    if (!block_reaches(c, b, -kSpan)) continue;
    const float* p = c.block(b);
    float w[kBlock];
    kernels().block_weights(p, c.max_logit(), c.scale(), w);
    for (int i = 0; i < kBlock; ++i) {
      const float x = (p[i] - c.max_logit()) * c.scale();
      if (x >= -kSpan) hist[bucket(x)] += w[i];
    }
  }
  double above = 0;
  int cross = 0;
  while (cross < kBuckets && above + hist[cross] < target) above += hist[cross++];
  if (cross == kBuckets) {  // the nucleus reaches past 20 nats
    collect(c, -kInf, [](float) { return true; });
    cut_prefix(c, target);
    return;
  }
  collect(c, -kSpan, [&](float x) { return x >= -kSpan && bucket(x) <= cross; });
  auto& list = c.list();
  const auto mid = std::partition(list.begin(), list.end(), [&](const TokenLogit& t) {
    return bucket((t.logit - c.max_logit()) * c.scale()) < cross;
  });
  cut_prefix(c, target, mid - list.begin(), above);
}

void MinP::apply(CandidateSet& c) const {
  if (p_ <= 0.0f) return;
  // The token with the largest probability has weight 1, so p_i >= p * p_max is weight >= p. Compared
  // on weights (not on x >= log p) so that libm's log cannot move the boundary between platforms.
  const auto keep = [p = p_](float x) { return exp_nonpositive(x) >= p; };
  if (c.full()) {
    // log's and exp_nonpositive's errors are ~1e-7; the margin only lets a few more tokens be tested.
    const float floor = std::log(p_) - 1e-3f;
    collect(c, floor, [&](float x) { return x >= floor && keep(x); });
    return;
  }
  std::erase_if(c.list(), [&](const TokenLogit& t) { return !keep((t.logit - c.max_logit()) * c.scale()); });
}

void Temperature::apply(CandidateSet& c) const { c.set_scale(c.scale() / t_); }

int32_t draw(CandidateSet& c, double u) {
  if (!c.full()) {
    auto& w = c.weights();
    w.resize(c.list().size());
    double z = 0;
    for (size_t i = 0; i < w.size(); ++i) z += w[i] = weight(c, c.list()[i].logit);
    const double target = u * z;
    double cum = 0;
    int32_t last = -1;
    for (size_t i = 0; i < w.size(); ++i) {
      if (w[i] == 0.0f) continue;
      cum += w[i];
      last = c.list()[i].id;
      if (target < cum) break;
    }
    return last;
  }
  // Mass per block first, then a walk inside the one block where the cumulative mass crosses.
  // Rounding can leave target at or past the total: then the last block with mass takes it.
  const double target = u * c.compute_block_mass();
  const auto& mass = c.block_mass();
  size_t b = 0;
  double cum = 0;
  double before = 0;  // mass of the blocks before b
  for (size_t i = 0; i < mass.size(); ++i) {
    if (mass[i] == 0) continue;
    b = i;
    before = cum;
    cum += mass[i];
    if (target < cum) break;
  }
  cum = before;
  const float* p = c.block(b);
  int32_t pick = -1;
  for (int i = 0; i < kBlock; ++i) {
    const float w = weight(c, p[i]);
    if (w == 0.0f) continue;
    cum += w;
    pick = static_cast<int32_t>(b * kBlock + i);
    if (target < cum) break;
  }
  return pick;
}

Sampler::Sampler(SamplingParams params, int32_t vocab_size)
    : params_(std::move(params)),
      vocab_size_(vocab_size),
      rng_(params_.seed),
      bias_(params_.logit_bias),
      repetition_(params_.repeat_penalty, params_.repeat_last_n),
      presence_frequency_(params_.presence_penalty, params_.frequency_penalty),
      top_k_(params_.top_k),
      top_p_(params_.top_p),
      min_p_(params_.min_p),
      temperature_(params_.temperature) {}

Result<Sampler> Sampler::create(SamplingParams params, int32_t vocab_size) {
  FERRUM_TRY(params.validate(vocab_size));
  return Sampler(std::move(params), vocab_size);
}

Status Sampler::add_prompt(std::span<const int32_t> tokens) {
  for (const int32_t t : tokens) {
    if (t < 0 || t >= vocab_size_)
      return Error(fmt::format("sampler: prompt token {} outside the vocabulary", t));
  }
  history_.insert(history_.end(), tokens.begin(), tokens.end());
  return {};
}

Result<int32_t> Sampler::sample(std::span<float> logits) {
  if (logits.size() != static_cast<size_t>(vocab_size_)) {
    return Error(fmt::format("sampler: {} logits for a vocabulary of {}", logits.size(), vocab_size_));
  }
  bias_.apply(logits);
  repetition_.apply(logits, history_);
  presence_frequency_.apply(logits, generated_);
  FERRUM_TRY(candidates_.reset(logits));
  int32_t token;
  if (params_.temperature == 0.0f) {
    token = candidates_.argmax();
  } else {
    top_k_.apply(candidates_);
    top_p_.apply(candidates_);
    min_p_.apply(candidates_);
    temperature_.apply(candidates_);
    token = draw(candidates_, uniform01(rng_));
  }
  accept(token);
  return token;
}

bool Sampler::greedy_only() const {
  const SamplingParams& p = params_;
  return p.temperature == 0.0f && p.logit_bias.empty() &&
         (p.repeat_penalty == 1.0f || p.repeat_last_n == 0) && p.presence_penalty == 0.0f &&
         p.frequency_penalty == 0.0f;
}

void Sampler::accept(int32_t token) {
  history_.push_back(token);
  ++generated_[token];
}

namespace sampler_simd {

namespace {
const Kernels& best_kernels() {
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return kernels_avx512();
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return kernels_avx2();
  return kernels_generic();
}
}  // namespace

const Kernels& kernels() {
  static const Kernels& k = best_kernels();
  return k;
}

}  // namespace sampler_simd

}  // namespace ferrum
