// Bodies of the sampler's Kernels, for vectors of kWidth floats; included by one .cpp per
// instruction set inside an anonymous namespace, after defining kWidth (4, 8 or 16). Only GCC
// vector extensions and builtins here: nothing that the linker could share with other files.
#pragma once

using VF = float __attribute__((vector_size(4 * kWidth)));
using VU = uint32_t __attribute__((vector_size(4 * kWidth)));
using V8F = float __attribute__((vector_size(32)));
using V8D = double __attribute__((vector_size(64)));
constexpr int kVecs = kLanes / kWidth;  // vectors per group of kLanes floats

template <>
struct Bits<VF> {
  static VU bits(VF x) { return (VU)x; }
  static VF from_bits(VU u) { return (VF)u; }
  static VU gt_mask(VU a, uint32_t b) { return (VU)(a > b); }
};
using B = Bits<VF>;
inline VF load(const float* p) {
  VF v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

void block_max_impl(const float* x, size_t nb, float* block_max, bool* nonfinite) {
  constexpr uint32_t kPlusInf = 0x7f800000u;
  constexpr uint32_t kMinusInf = 0xff800000u;
  VU bad = {};
  for (size_t b = 0; b < nb; ++b) {
    const float* p = x + b * kBlock;
    VF m[kVecs];
    for (int k = 0; k < kVecs; ++k) m[k] = load(p + k * kWidth);
    for (int i = 0; i < kBlock; i += kLanes) {
      for (int k = 0; k < kVecs; ++k) {
        const VF v = load(p + i + k * kWidth);
        const VU u = B::bits(v);
        const VU gt = (VU)(v > m[k]);
        m[k] = B::from_bits((u & gt) | (B::bits(m[k]) & ~gt));
        // Without the sign bit, infinities and NaNs are the patterns >= +inf; -inf is allowed.
        bad |= (VU)((u & 0x7fffffffu) >= kPlusInf) & (VU)(u != kMinusInf);
      }
    }
    // Max is exact, so any order will do: fold the lanes in halves (short dependency chains).
    float lane[kLanes];
    __builtin_memcpy(lane, m, sizeof lane);
    for (int half = kLanes / 2; half > 0; half /= 2) {
      for (int l = 0; l < half; ++l) lane[l] = lane[l + half] > lane[l] ? lane[l + half] : lane[l];
    }
    block_max[b] = lane[0];
  }
  uint32_t any = 0;
  for (int j = 0; j < kWidth; ++j) any |= bad[j];
  *nonfinite = *nonfinite || any != 0;
}

void block_mass_impl(const float* x, size_t nb, const float* block_max, float max, float scale,
                     double* mass) {
  for (size_t b = 0; b < nb; ++b) {
    if ((block_max[b] - max) * scale < kExpMin) {
      mass[b] = 0.0;
      continue;
    }
    const float* p = x + b * kBlock;
    VF acc[kVecs] = {};
    for (int i = 0; i < kBlock; i += kLanes) {
      for (int k = 0; k < kVecs; ++k) acc[k] += exp_nonpositive<VF>((load(p + i + k * kWidth) - max) * scale);
    }
    // Lanes 0..15 lie in acc in order. They are added in double in halves, the same tree for every
    // width: d = lanes[0..8) + lanes[8..16), then d[l] + d[l + 4], then + 2, then + 1.
    V8F lo;
    V8F hi;
    __builtin_memcpy(&lo, acc, sizeof lo);
    __builtin_memcpy(&hi, reinterpret_cast<const char*>(acc) + sizeof lo, sizeof hi);
    const V8D d = __builtin_convertvector(lo, V8D) + __builtin_convertvector(hi, V8D);
    mass[b] = ((d[0] + d[4]) + (d[2] + d[6])) + ((d[1] + d[5]) + (d[3] + d[7]));
  }
}

void block_weights_impl(const float* x, float max, float scale, float* w) {
  for (int i = 0; i < kBlock; i += kWidth) {
    const VF v = exp_nonpositive<VF>((load(x + i) - max) * scale);
    __builtin_memcpy(w + i, &v, sizeof v);
  }
}

#define FERRUM_DEFINE_SAMPLER_KERNELS(fn_name, isa_name)                                   \
  const Kernels& fn_name() {                                                               \
    static const Kernels k{isa_name, block_max_impl, block_mass_impl, block_weights_impl}; \
    return k;                                                                              \
  }
