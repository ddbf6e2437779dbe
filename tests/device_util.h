// Tests of a GPU backend skip on machines without a device (CI has none) instead of failing.
#pragma once

#include <gtest/gtest.h>

#include <string>

#ifdef FERRUM_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace ferrum::testing {

// False only for "cuda" / "cuda:N" in a CUDA build on a machine with no device; a build without
// CUDA says so through create_backend's error instead.
inline bool backend_device_present(const std::string& name) {
#ifdef FERRUM_HAVE_CUDA
  if (name.rfind("cuda", 0) == 0) return cuda_device_count() > 0;
#endif
  return !name.empty();
}

}  // namespace ferrum::testing

#define FERRUM_SKIP_WITHOUT_DEVICE(backend)                          \
  do {                                                               \
    if (!::ferrum::testing::backend_device_present(backend))         \
      GTEST_SKIP() << "no device for backend '" << (backend) << "'"; \
  } while (0)
