// Sampler: each processor against distributions computed by hand (or by a plain sort + libm exp in
// double), the draw against softmax by a chi-square test, the vectorized kernels against each other,
// and the Sampler's order, greedy ties, penalty windows and seed determinism.
#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "engine/sampler_simd.h"

namespace ferrum {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Logits whose softmax is exactly {0.4, 0.3, 0.15, 0.1, 0.05} (up to float rounding of the logs).
std::vector<float> five() {
  std::vector<float> l;
  for (const double p : {0.4, 0.3, 0.15, 0.1, 0.05}) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

// The set's distribution over the whole vocabulary (0 for removed tokens).
std::vector<double> dense(const CandidateSet& c) {
  std::vector<double> d(c.logits().size(), 0.0);
  for (const auto& [id, p] : c.probabilities()) d[id] = p;
  return d;
}

void expect_dist(const std::vector<double>& got, const std::vector<double>& want, double tol = 2e-6) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "token " << i;
}

std::vector<float> random_logits(size_t n, float lo, float hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> l(n);
  for (auto& x : l) x = lo + (hi - lo) * static_cast<float>(uniform01(rng));
  return l;
}

// Reference top-p: full sort (logit desc, id asc), double exp, smallest prefix with mass >= p.
std::vector<int32_t> reference_nucleus(const std::vector<float>& logits, double p) {
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return better({a, logits[a]}, {b, logits[b]});
  });
  const double m = logits[ids[0]];
  double z = 0;
  for (const float l : logits) z += std::exp(l - m);
  double cum = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    cum += std::exp(logits[ids[i]] - m) / z;
    if (cum >= p) {
      // The cut must not sit on a rounding knife edge, or float and double could disagree.
      EXPECT_GT(std::min(cum - p, p - (cum - std::exp(logits[ids[i]] - m) / z)), 1e-6);
      ids.resize(i + 1);
      break;
    }
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<int32_t> ids_of(const CandidateSet& c) {
  std::vector<int32_t> ids;
  for (const auto& [id, p] : c.probabilities()) ids.push_back(id);
  return ids;
}

// Pearson's chi-square statistic of observed counts against probabilities.
double chi_square(const std::vector<int64_t>& counts, const std::vector<double>& probs) {
  const double n = static_cast<double>(std::accumulate(counts.begin(), counts.end(), int64_t{0}));
  double chi2 = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double e = n * probs[i];
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  return chi2;
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature = 1.0) {
  const double m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p;
  for (const float l : logits) p.push_back(std::exp((l - m) / temperature));
  const double z = std::accumulate(p.begin(), p.end(), 0.0);
  for (auto& x : p) x /= z;
  return p;
}

std::vector<int64_t> sample_counts(const SamplingParams& params, const std::vector<float>& logits,
                                   int draws) {
  auto s = Sampler::create(params, static_cast<int32_t>(logits.size()));
  EXPECT_TRUE(s.ok()) << s.status().message();
  std::vector<int64_t> counts(logits.size(), 0);
  std::vector<float> scratch;
  for (int i = 0; i < draws; ++i) {
    scratch = logits;
    auto t = s->sample(scratch);
    EXPECT_TRUE(t.ok());
    ++counts[*t];
  }
  return counts;
}

TEST(PortableExp, MatchesLibmWithinTwoUlp) {
  EXPECT_EQ(portable_exp(0.0f), 1.0f);
  EXPECT_EQ(portable_exp(-0.0f), 1.0f);
  EXPECT_EQ(portable_exp(-kInf), 0.0f);
  EXPECT_EQ(portable_exp(-87.5f), 0.0f);
  for (float x = -86.9f; x <= 0.0f; x += 0.0137f) {
    const double want = std::exp(static_cast<double>(x));
    EXPECT_NEAR(portable_exp(x), want, 2.5e-7 * want) << x;
  }
}

TEST(Uniform01, UsesTheTop53BitsOfTheStandardSequence) {
  // The standard fixes the 10000th output of a default-seeded mt19937_64: 9981545732273789042, whose
  // top 53 bits are 4873801627086811, i.e. 0x1.150b25eb02fdbp-1 as a double.
  std::mt19937_64 rng;
  rng.discard(9999);
  EXPECT_EQ(uniform01(rng), 0x1.150b25eb02fdbp-1);
}

int32_t argmax_of(const std::vector<float>& l) {
  CandidateSet c;
  EXPECT_TRUE(c.reset(l).ok());
  return c.argmax();
}

TEST(CandidateSet, ArgmaxLowestIdOnTiesAcrossBlocks) {
  std::vector<float> l(200, 0.0f);
  l[70] = 5.0f;
  l[130] = 5.0f;
  EXPECT_EQ(argmax_of(l), 70);
  l[3] = 5.0f;
  EXPECT_EQ(argmax_of(l), 3);
  l[199] = 6.0f;  // in the short last block
  EXPECT_EQ(argmax_of(l), 199);
  EXPECT_EQ(argmax_of(std::vector<float>(7, 1.0f)), 0);
}

// The kernels of every instruction set this CPU runs give the bits of the generic ones, and the
// masses match a double-precision libm sum.
TEST(SamplerKernels, EveryInstructionSetGivesTheSameBits) {
  namespace simd = sampler_simd;
  auto l = random_logits(64 * 50, -100.0f, 10.0f, 9);
  l[5] = -kInf;
  const size_t nb = l.size() / simd::kBlock;
  const auto run = [&](const simd::Kernels& k, std::vector<float>& bm, std::vector<double>& mass) {
    bool bad = false;
    bm.resize(nb);
    mass.resize(nb);
    k.block_max(l.data(), nb, bm.data(), &bad);
    EXPECT_FALSE(bad);
    k.block_mass(l.data(), nb, bm.data(), 10.0f, 0.5f, mass.data());
  };
  std::vector<float> bm0;
  std::vector<double> mass0;
  run(simd::kernels_generic(), bm0, mass0);
  for (size_t b = 0; b < nb; ++b) {
    EXPECT_EQ(bm0[b], *std::max_element(l.begin() + b * 64, l.begin() + (b + 1) * 64));
    double want = 0;
    for (size_t i = b * 64; i < (b + 1) * 64; ++i) want += std::exp((static_cast<double>(l[i]) - 10.0) * 0.5);
    if ((bm0[b] - 10.0f) * 0.5f < -87.0f) want = 0;  // skipped blocks: under 64 e^-87 = 1e-36
    EXPECT_NEAR(mass0[b], want, 5e-7 * want) << b;
  }
  std::vector<const simd::Kernels*> others;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    others.push_back(&simd::kernels_avx2());
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    others.push_back(&simd::kernels_avx512());
  }
  for (const auto* k : others) {
    std::vector<float> bm;
    std::vector<double> mass;
    run(*k, bm, mass);
    EXPECT_EQ(bm, bm0) << k->isa;
    EXPECT_EQ(mass, mass0) << k->isa;
  }
  for (const float bad : {std::nanf(""), kInf}) {
    auto x = l;
    x[64 * 7 + 3] = bad;
    bool nonfinite = false;
    std::vector<float> bm(nb);
    simd::kernels().block_max(x.data(), nb, bm.data(), &nonfinite);
    EXPECT_TRUE(nonfinite);
  }
}

TEST(LogitBias, AddsAndAccumulates) {
  std::vector<float> l = {1.0f, 2.0f, 3.0f};
  LogitBias({{0, 0.5f}, {2, -kInf}, {0, 1.0f}}).apply(l);
  EXPECT_EQ(l, (std::vector<float>{2.5f, 2.0f, -kInf}));
}

TEST(RepetitionPenalty, DividesPositiveMultipliesNegativeEachTokenOnce) {
  const std::vector<int32_t> history = {0, 1, 0, 4, 2};
  std::vector<float> l = {2.0f, -1.0f, 0.5f, 1.0f, 3.0f};
  RepetitionPenalty(2.0f, -1).apply(l, history);  // whole history; token 0 twice, penalized once
  EXPECT_EQ(l, (std::vector<float>{1.0f, -2.0f, 0.25f, 1.0f, 1.5f}));
  l = {2.0f, -1.0f, 0.5f, 1.0f, 3.0f};
  RepetitionPenalty(2.0f, 3).apply(l, history);  // last 3: {0, 4, 2}
  EXPECT_EQ(l, (std::vector<float>{1.0f, -1.0f, 0.25f, 1.0f, 1.5f}));
  RepetitionPenalty rp(2.0f, 0);  // window 0: off
  l = {2.0f, -1.0f, 0.5f, 1.0f, 3.0f};
  rp.apply(l, history);
  EXPECT_EQ(l, (std::vector<float>{2.0f, -1.0f, 0.5f, 1.0f, 3.0f}));
}

TEST(PresenceFrequencyPenalty, OpenAiFormula) {
  std::vector<float> l = {1.0f, 1.0f, 1.0f};
  PresenceFrequencyPenalty(0.5f, 0.25f).apply(l, {{1, 3}, {2, 1}});
  EXPECT_EQ(l, (std::vector<float>{1.0f, 1.0f - 0.75f - 0.5f, 1.0f - 0.25f - 0.5f}));
}

TEST(CandidateSet, RejectsBadLogits) {
  CandidateSet c;
  EXPECT_FALSE(c.reset({}).ok());
  const std::vector<float> minus_inf(100, -kInf);
  EXPECT_FALSE(c.reset(minus_inf).ok());
  for (const size_t at : {1, 64, 99}) {  // in a full block and in the short last one
    std::vector<float> bad(100, 0.0f);
    bad[at] = std::nanf("");
    EXPECT_FALSE(c.reset(bad).ok()) << at;
    bad[at] = kInf;
    EXPECT_FALSE(c.reset(bad).ok()) << at;
  }
  const std::vector<float> ok = {0.0f, -kInf};
  EXPECT_TRUE(c.reset(ok).ok());
  expect_dist(dense(c), {1.0, 0.0});
}

TEST(TopK, HandComputed) {
  const auto l = five();
  CandidateSet c;
  ASSERT_TRUE(c.reset(l).ok());
  TopK(2).apply(c);
  expect_dist(dense(c), {0.4 / 0.7, 0.3 / 0.7, 0, 0, 0});
  TopK(1).apply(c);  // on the list
  expect_dist(dense(c), {1, 0, 0, 0, 0});
  ASSERT_TRUE(c.reset(l).ok());
  TopK(0).apply(c);
  TopK(9).apply(c);
  expect_dist(dense(c), {0.4, 0.3, 0.15, 0.1, 0.05});
}

TEST(TopK, LargeVocabMatchesFullSortWithTies) {
  auto l = random_logits(1000, -5.0f, 5.0f, 1);
  for (const int i : {10, 500, 999}) l[i] = 7.0f;  // ties at the cut: ids 10 and 500 win
  CandidateSet c;
  ASSERT_TRUE(c.reset(l).ok());
  TopK(2).apply(c);
  EXPECT_EQ(ids_of(c), (std::vector<int32_t>{10, 500}));
  ASSERT_TRUE(c.reset(l).ok());
  TopK(40).apply(c);
  std::vector<int32_t> ids(l.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return better({a, l[a]}, {b, l[b]}); });
  ids.resize(40);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids_of(c), ids);
  ASSERT_TRUE(c.sorted());
  for (size_t i = 1; i < c.list().size(); ++i) EXPECT_TRUE(better(c.list()[i - 1], c.list()[i]));
}

TEST(TopP, HandComputed) {
  const auto l = five();
  CandidateSet c;
  ASSERT_TRUE(c.reset(l).ok());
  TopP(0.75f).apply(c);  // 0.4 + 0.3 < 0.75 <= 0.4 + 0.3 + 0.15
  expect_dist(dense(c), {0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85, 0, 0});
  TopP(0.6f).apply(c);  // on the list: 0.4/0.85 < 0.6 <= 0.7/0.85
  expect_dist(dense(c), {0.4 / 0.7, 0.3 / 0.7, 0, 0, 0});
  ASSERT_TRUE(c.reset(l).ok());
  TopP(0.1f).apply(c);  // at least one token
  expect_dist(dense(c), {1, 0, 0, 0, 0});
  ASSERT_TRUE(c.reset(l).ok());
  TopP(1.0f).apply(c);
  EXPECT_TRUE(c.full());
}

TEST(TopP, LargeVocabMatchesFullSort) {
  // The nucleus lies within 4 nats of the top; then beyond (found by the mass histogram); then a
  // flat distribution with more tokens within 4 nats than the first try takes.
  for (const auto& [n, lo, p] :
       {std::tuple{5000, -30.0f, 0.9f}, {5000, -30.0f, 0.999f}, {20000, -3.0f, 0.5f}}) {
    const auto l = random_logits(n, lo, 0.0f, 6);
    CandidateSet c;
    ASSERT_TRUE(c.reset(l).ok());
    TopP(p).apply(c);
    EXPECT_EQ(ids_of(c), reference_nucleus(l, p)) << n << " " << p;
  }
}

TEST(TopP, WidensPastTwentyNats) {
  // Top token (weight 1) and tokens 11, 12, 13, 15 nats below it, among 1000 at -40. Masses:
  // 1/Z = 0.9999746 and (1 + e^-11)/Z = 0.9999913 < p = 0.999994 <= (1 + e^-11 + e^-12)/Z = 0.9999974.
  std::vector<float> l(1000, -40.0f);
  l[700] = 0.0f;
  l[10] = -11.0f;
  l[999] = -12.0f;
  l[64] = -13.0f;
  l[300] = -15.0f;
  CandidateSet c;
  ASSERT_TRUE(c.reset(l).ok());
  TopP(0.999994f).apply(c);
  EXPECT_EQ(ids_of(c), (std::vector<int32_t>{10, 700, 999}));
}

TEST(TopP, UnboundedTailIsASmallestPrefix) {
  // Beyond 20 nats single tokens weigh < 2e-9, below float accuracy, so the cut is checked as a
  // property: a best-first prefix whose mass reaches p, but not without its last token (to 1e-6).
  auto l = random_logits(100000, -26.0f, -21.0f, 5);
  l[123] = 0.0f;
  const float p = 0.9999995f;
  CandidateSet c;
  ASSERT_TRUE(c.reset(l).ok());
  TopP(p).apply(c);
  auto kept = c.list();
  std::sort(kept.begin(), kept.end(), better);
  ASSERT_GT(kept.size(), 1u);
  ASSERT_LT(kept.size(), l.size());
  double z = 0;
  for (const float x : l) z += std::exp(static_cast<double>(x));
  double mass = 0;
  for (const auto& t : kept) mass += std::exp(static_cast<double>(t.logit)) / z;
  EXPECT_GE(mass, p - 1e-6);
  EXPECT_LT(mass - std::exp(static_cast<double>(kept.back().logit)) / z, p + 1e-6);
  std::vector<bool> in(l.size(), false);
  for (const auto& t : kept) in[t.id] = true;
  for (size_t i = 0; i < l.size(); ++i) {
    if (!in[i]) {
      EXPECT_TRUE(better(kept.back(), {static_cast<int32_t>(i), l[i]})) << i;
    }
  }
}

TEST(MinP, HandComputed) {
  const auto l = five();
  CandidateSet c;
  ASSERT_TRUE(c.reset(l).ok());
  MinP(0.3f).apply(c);  // keeps p >= 0.12
  expect_dist(dense(c), {0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85, 0, 0});
  MinP(0.5f).apply(c);  // on the list: keeps p >= 0.2
  expect_dist(dense(c), {0.4 / 0.7, 0.3 / 0.7, 0, 0, 0});
  ASSERT_TRUE(c.reset(l).ok());
  MinP(1.0f).apply(c);
  expect_dist(dense(c), {1, 0, 0, 0, 0});
}

TEST(Temperature, HandComputed) {
  const auto l = five();
  CandidateSet c;
  ASSERT_TRUE(c.reset(l).ok());
  Temperature(0.5f).apply(c);  // p^2, renormalized
  const double z = 0.16 + 0.09 + 0.0225 + 0.01 + 0.0025;
  expect_dist(dense(c), {0.16 / z, 0.09 / z, 0.0225 / z, 0.01 / z, 0.0025 / z});
  TopK(2).apply(c);
  expect_dist(dense(c), {0.16 / 0.25, 0.09 / 0.25, 0, 0, 0});
}

// Critical values: scipy.stats.chi2.isf(1e-9, df). A correct sampler exceeds them once in 1e9 seeds.
constexpr double kChi2Df5 = 50.692;
constexpr double kChi2Df129 = 249.71;

TEST(Draw, ChiSquareMatchesSoftmax) {
  const std::vector<float> l = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f, -1.0f};
  SamplingParams params;
  params.seed = 42;
  const auto counts = sample_counts(params, l, 100000);
  EXPECT_LT(chi_square(counts, softmax(l)), kChi2Df5);
  // The same check must reject a distribution 10% off in one token's weight.
  auto wrong = l;
  wrong[2] += 0.1f;
  EXPECT_GT(chi_square(counts, softmax(wrong)), kChi2Df5);
}

TEST(Draw, ChiSquareAcrossBlocks) {
  const auto l = random_logits(130, -1.0f, 1.0f, 3);  // two full blocks and a short one
  SamplingParams params;
  params.seed = 7;
  const auto counts = sample_counts(params, l, 100000);
  EXPECT_LT(chi_square(counts, softmax(l)), kChi2Df129);
  EXPECT_GT(chi_square(counts, softmax(l, 1.1)), kChi2Df129);
}

TEST(Sampler, TruncatesBeforeTemperatureLikeLlamaCpp) {
  // llama.cpp order: top-p on the temperature-1 distribution keeps {0, 1, 2} (0.85 >= 0.75), then
  // temperature 0.5 squares it. (HF order would keep only {0, 1}.)
  SamplingParams params;
  params.top_p = 0.75f;
  params.temperature = 0.5f;
  params.seed = 1;
  const auto counts = sample_counts(params, five(), 100000);
  EXPECT_EQ(counts[3] + counts[4], 0);
  const double z = 0.16 + 0.09 + 0.0225;
  const std::vector<int64_t> kept(counts.begin(), counts.begin() + 3);
  // df = 2: scipy.stats.chi2.isf(1e-9, 2) = 41.45.
  EXPECT_LT(chi_square(kept, {0.16 / z, 0.09 / z, 0.0225 / z}), 41.45);
}

TEST(Sampler, SameSeedSameTokens) {
  SamplingParams params;
  params.temperature = 0.7f;
  params.top_k = 40;
  params.top_p = 0.9f;
  params.repeat_penalty = 1.1f;
  params.presence_penalty = 0.2f;
  params.frequency_penalty = 0.1f;
  params.seed = 1234;
  const auto logits = random_logits(3000, -8.0f, 8.0f, 4);
  const auto run = [&](uint64_t seed) {
    auto p = params;
    p.seed = seed;
    auto s = Sampler::create(p, 3000);
    EXPECT_TRUE(s.ok());
    EXPECT_TRUE(s->add_prompt(std::vector<int32_t>{5, 6, 7}).ok());
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) {
      auto l = logits;
      out.push_back(s->sample(l).value());
    }
    return out;
  };
  const auto a = run(1234);
  EXPECT_EQ(a, run(1234));
  EXPECT_NE(a, run(1235));
}

TEST(Sampler, GreedyLowestIdOnTiesAndNoDraw) {
  SamplingParams params;
  params.temperature = 0.0f;
  auto s = Sampler::create(params, 4);
  ASSERT_TRUE(s.ok());
  for (int i = 0; i < 3; ++i) {
    std::vector<float> l = {0.0f, 3.0f, 1.0f, 3.0f};
    EXPECT_EQ(s->sample(l).value(), 1);
  }
  std::vector<float> bad = {0.0f, std::nanf(""), 1.0f, 3.0f};
  EXPECT_FALSE(s->sample(bad).ok());
}

TEST(Sampler, PenaltyWindows) {
  // Presence/frequency count generated tokens only; the repetition penalty also sees the prompt.
  SamplingParams params;
  params.temperature = 0.0f;
  params.presence_penalty = 2.0f;
  auto s = Sampler::create(params, 3);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->add_prompt(std::vector<int32_t>{0, 0}).ok());
  const std::vector<float> l = {3.0f, 2.0f, 0.0f};
  auto x = l;
  EXPECT_EQ(s->sample(x).value(), 0);  // the prompt's 0 is not penalized
  x = l;
  EXPECT_EQ(s->sample(x).value(), 1);  // 3 - 2 < 2
  x = l;
  EXPECT_EQ(s->sample(x).value(), 0);  // both seen once: 3 - 2 > 2 - 2

  params = {};
  params.temperature = 0.0f;
  params.repeat_penalty = 2.0f;
  params.repeat_last_n = 1;
  s = Sampler::create(params, 3);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->add_prompt(std::vector<int32_t>{0}).ok());
  x = l;
  EXPECT_EQ(s->sample(x).value(), 1);  // 3 / 2 < 2
  x = l;
  EXPECT_EQ(s->sample(x).value(), 0);  // the window (last 1) now holds only 1
}

TEST(Sampler, LogitBiasBansAndForces) {
  SamplingParams params;
  params.logit_bias = {{0, -kInf}, {1, -kInf}};
  params.seed = 3;
  const auto counts = sample_counts(params, {5.0f, 5.0f, 0.0f}, 1000);
  EXPECT_EQ(counts[2], 1000);
}

TEST(Sampler, ValidatesParametersAndInputs) {
  const auto bad = [](auto edit) {
    SamplingParams p;
    edit(p);
    return !Sampler::create(p, 10).ok();
  };
  EXPECT_TRUE(bad([](SamplingParams& p) { p.temperature = -1.0f; }));
  EXPECT_TRUE(bad([](SamplingParams& p) { p.top_p = 0.0f; }));
  EXPECT_TRUE(bad([](SamplingParams& p) { p.top_p = 1.5f; }));
  EXPECT_TRUE(bad([](SamplingParams& p) { p.min_p = -0.1f; }));
  EXPECT_TRUE(bad([](SamplingParams& p) { p.repeat_penalty = 0.0f; }));
  EXPECT_TRUE(bad([](SamplingParams& p) { p.repeat_last_n = -2; }));
  EXPECT_TRUE(bad([](SamplingParams& p) { p.logit_bias = {{10, 1.0f}}; }));
  EXPECT_TRUE(bad([](SamplingParams& p) { p.logit_bias = {{1, kInf}}; }));
  EXPECT_FALSE(bad([](SamplingParams&) {}));
  auto s = Sampler::create({}, 10);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->add_prompt(std::vector<int32_t>{3, 10}).ok());
  std::vector<float> short_logits(9, 0.0f);
  EXPECT_FALSE(s->sample(short_logits).ok());
}

}  // namespace
}  // namespace ferrum
