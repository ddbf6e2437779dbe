#include "backend/host_memory.h"

#include <string>

namespace ferrum {

Result<void*> HostMemoryBackend::alloc(size_t bytes) {
  // 64-byte alignment for AVX-512 loads; aligned_alloc needs a multiple of the alignment.
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) return Error("out of host memory allocating " + std::to_string(bytes) + " bytes");
  return p;
}

}  // namespace ferrum
