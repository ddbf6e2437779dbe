// The CUDA backend (built when FERRUM_CUDA is on): weights uploaded once in their stored type,
// every op a kernel queued on one stream, small-step matmuls as weight-streaming GEMVs and large
// ones through cuBLAS. This header needs no CUDA headers.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace ferrum {

// Number of usable CUDA devices (0 when there is no driver or no device).
int cuda_device_count();

// A backend on CUDA device `device` (CUDA_VISIBLE_DEVICES numbering); exact_gemm as in BackendOptions.
Result<std::unique_ptr<Backend>> create_cuda_backend(int device, bool exact_gemm);

}  // namespace ferrum
