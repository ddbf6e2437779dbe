// cuBLAS, opened with dlopen when the first CUDA backend is made. Linked, it made the loader map and
// relocate cuBLASLt in every process of a CUDA build, CPU runs included: ~150 MB resident before any
// call (a program linking cuBLASLt 13 and calling nothing: 153 MB; `ferrum serve --backend cpu` 199 MB
// against 15 MB in a CPU-only build).
#pragma once

#include <cublas_v2.h>

#include <type_traits>

#include "ferrum/status.h"

namespace ferrum::cuda {

// The int-sized C cublasGemmEx (the header also declares a C++ overload with other argument types).
using GemmEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                  const void*, const void*, cudaDataType, int, const void*, cudaDataType, int,
                                  const void*, void*, cudaDataType, int, cublasComputeType_t,
                                  cublasGemmAlgo_t);
// Overload resolution against the header's declarations checks the signature (unevaluated: no link).
static_assert(std::is_same_v<decltype(static_cast<GemmEx>(&cublasGemmEx)), GemmEx>);

// The cuBLAS functions the CUDA backend calls.
struct Cublas {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  GemmEx gemm_ex = nullptr;
};

// Opens the cuBLAS of the toolkit ferrum was built with (libcublas.so.<major>, from the loader's search
// path, else from the toolkit's library folder) on the first call; the library stays open for the
// process. An error says which library or function is missing.
Result<const Cublas*> cublas();

}  // namespace ferrum::cuda
