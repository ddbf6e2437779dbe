// Microseconds per Sampler::sample over a 151936-token vocabulary (Qwen2/3), for typical settings.
//   ninja -C build bench_sampler && build/bench/sampler/bench_sampler --benchmark_repetitions=5
// "peaked" logits look like an LLM's: a bulk of N(0, 2.5^2) and 8 tokens 14..21 above it (the top
// one has p = 0.63, the bulk 0.2% in all). "flat" ones, N(0, 1) with no clear winner, are the worst
// case for top-p and min-p, whose candidate sets then span tens of thousands of tokens.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "engine/sampler.h"

namespace ferrum {
namespace {

constexpr int32_t kVocab = 151936;

std::vector<float> make_logits(bool peaked) {
  std::mt19937_64 rng(17);
  std::vector<float> l(kVocab);
  for (auto& x : l) {
    // Box-Muller from our own uniform, so the inputs are the same everywhere.
    const double u1 = 1.0 - uniform01(rng);
    const double u2 = uniform01(rng);
    x = static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2) *
                           (peaked ? 2.5 : 1.0));
  }
  if (peaked) {
    for (int i = 0; i < 8; ++i) l[(i * 7919 + 11) % kVocab] = 14.0f + static_cast<float>(i);
  }
  return l;
}

enum Config { kGreedy, kTypical, kTopPOnly, kMinPOnly, kTemperatureOnly };

SamplingParams params_for(Config c) {
  SamplingParams p;
  p.seed = 1;
  switch (c) {
    case kGreedy:
      p.temperature = 0.0f;
      break;
    case kTypical:
      p.temperature = 0.7f;
      p.top_k = 40;
      p.top_p = 0.9f;
      break;
    case kTopPOnly:
      p.temperature = 0.7f;
      p.top_p = 0.9f;
      break;
    case kMinPOnly:
      p.temperature = 0.7f;
      p.min_p = 0.05f;
      break;
    case kTemperatureOnly:
      p.temperature = 0.7f;
      break;
  }
  return p;
}

void BM_Sample(benchmark::State& state) {
  auto logits = make_logits(state.range(1) != 0);
  auto sampler = Sampler::create(params_for(static_cast<Config>(state.range(0))), kVocab);
  if (!sampler.ok()) {
    state.SkipWithError(sampler.status().message().c_str());
    return;
  }
  // No bias or penalties are set, so sample() leaves the logits as they were.
  for (auto _ : state) benchmark::DoNotOptimize(sampler->sample(logits));
}

// For scale: top-p 0.9 at temperature 0.7 the plain way (libm softmax over the vocabulary, full sort,
// cumulative scan, linear draw), as a straightforward implementation would do it.
void BM_NaiveTopP(benchmark::State& state) {
  const auto logits = make_logits(state.range(0) != 0);
  std::mt19937_64 rng(1);
  std::vector<std::pair<float, int32_t>> probs(kVocab);
  for (auto _ : state) {
    const float max = *std::max_element(logits.begin(), logits.end());
    double z = 0;
    for (int32_t i = 0; i < kVocab; ++i) z += probs[i].first = std::exp((logits[i] - max) / 0.7f);
    for (int32_t i = 0; i < kVocab; ++i) probs[i].second = i;
    std::sort(probs.begin(), probs.end(), std::greater<>());
    double cum = 0;
    size_t n = 0;
    while (n < probs.size() && cum < 0.9 * z) cum += probs[n++].first;
    double target = uniform01(rng) * cum;
    size_t pick = 0;
    while (pick + 1 < n && (target -= probs[pick].first) >= 0) ++pick;
    benchmark::DoNotOptimize(probs[pick].second);
  }
}
BENCHMARK(BM_NaiveTopP)->ArgName("peaked")->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);

void configs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"config", "peaked"});
  for (const int peaked : {1, 0}) {
    for (const int c : {kGreedy, kTypical, kTopPOnly, kMinPOnly, kTemperatureOnly}) b->Args({c, peaked});
  }
  b->Unit(benchmark::kMicrosecond);
  // On a shared machine the fastest repetition is the least disturbed one (--benchmark_repetitions).
  b->ComputeStatistics("min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); });
}

BENCHMARK(BM_Sample)->Apply(configs);

}  // namespace
}  // namespace ferrum

BENCHMARK_MAIN();
