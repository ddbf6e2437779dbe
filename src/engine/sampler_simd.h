// The sampler's vectorized block kernels (maxima, probability masses, weights), compiled once per
// instruction set (sampler_kernels_{generic,avx2,avx512}.cpp include sampler_kernels_impl.h) and
// chosen at first use, plus the exp they share with the scalar code.
//
// Every variant gives the same bits: all of them accumulate in the same 16 lanes and add the lanes
// up in the same order, use only IEEE +, -, * (these files and sampler.cpp build with
// -ffp-contract=off, so no FMA), and compare floats as bit patterns.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferrum::sampler_simd {

constexpr int kBlock = 64;         // block size of the per-block maxima and masses
constexpr int kLanes = 16;         // accumulation lanes, whatever the vector width
constexpr float kExpMin = -87.0f;  // below it exp_nonpositive gives 0
constexpr uint32_t kExpMinBits = 0xc2ae0000u;
static_assert(__builtin_bit_cast(uint32_t, kExpMin) == kExpMinBits);

namespace {

// Bit views of F (float or a GCC vector of floats; sampler_kernels_impl.h adds the vectors):
// bits(x), from_bits(u), and gt_mask(a, b), all ones where a > b (unsigned).
template <class F>
struct Bits;

template <>
struct Bits<float> {
  static uint32_t bits(float x) { return __builtin_bit_cast(uint32_t, x); }
  static float from_bits(uint32_t u) { return __builtin_bit_cast(float, u); }
  static uint32_t gt_mask(uint32_t a, uint32_t b) { return a > b ? ~0u : 0u; }
};

// exp(x) for x <= 0 (NaN excluded), 0 below -87, for F float or a vector of floats. Cephes expf:
// x = n ln2 + r, |r| <= ln2 / 2, e^r by a degree-7 minimax polynomial, 2^n by writing the exponent
// bits; within 2 ulp. No branch and no float compare (x < -87 compares bit patterns): it vectorizes.
template <class F>
[[gnu::always_inline]] inline F exp_nonpositive(F x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;  // 9 significant bits: n * kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  using B = Bits<F>;
  const auto ux = B::bits(x);
  // For x <= 0 a larger bit pattern is a more negative float.
  const auto under = B::gt_mask(ux, kExpMinBits);
  const F xc = B::from_bits((ux & ~under) | (kExpMinBits & under));  // keeps 2^n a normal float
  const F t = xc * kLog2e + kRound;
  const F n = t - kRound;
  const auto ni = B::bits(t) - Bits<float>::bits(kRound);  // n as an integer in [-126, 0], modulo 2^32
  const F r = (xc - n * kLn2Hi) - n * kLn2Lo;
  F p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const F er = p * (r * r) + r + 1.0f;
  const F y = er * B::from_bits((ni + 127u) << 23);
  return B::from_bits(B::bits(y) & ~under);
}

}  // namespace

struct Kernels {
  const char* isa;
  // Maximum of each of the nb blocks of x (kBlock floats each) into block_max; ORs into *nonfinite
  // whether any element is NaN or +inf.
  void (*block_max)(const float* x, size_t nb, float* block_max, bool* nonfinite);
  // Mass of each block, sum of exp_nonpositive((x - max) * scale), into mass (double). Blocks whose
  // block_max is below kExpMin after shifting and scaling get 0 without being read.
  void (*block_mass)(const float* x, size_t nb, const float* block_max, float max, float scale, double* mass);
  // w[i] = exp_nonpositive((x[i] - max) * scale) for one block.
  void (*block_weights)(const float* x, float max, float scale, float* w);
};

const Kernels& kernels_generic();
const Kernels& kernels_avx2();
const Kernels& kernels_avx512();
// The best this CPU runs (chosen once).
const Kernels& kernels();

}  // namespace ferrum::sampler_simd
