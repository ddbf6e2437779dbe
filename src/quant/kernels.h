// Fast kernels per instruction set and type family (internal to ferrum_quant; dispatch.cpp picks
// among them). Each returns nullptr for a type it does not cover.
#pragma once

#include "quant/matmul.h"

namespace ferrum::quant {

// AVX-512 F/BW/VL/DQ + VNNI (+ F16C, FMA).
const MatmulKernel* avx512_float_kernel(DType weight_type);  // F32, F16, BF16
const MatmulKernel* avx512_q8_0_kernel(DType weight_type);   // Q8_0, Q4_0, Q4_1, Q5_0 (Q8_0 activations)
const MatmulKernel* avx512_k_kernel(DType weight_type);      // Q4_K, Q5_K, Q6_K (Q8_K activations)

// AVX2 + FMA + F16C, every type.
const MatmulKernel* avx2_kernel(DType weight_type);

}  // namespace ferrum::quant
