// Host memory management shared by the backends that compute on the host.
#pragma once

#include <cstdlib>
#include <cstring>

#include "backend/backend.h"

namespace ferrum {

class HostMemoryBackend : public Backend {
 public:
  Result<void*> alloc(size_t bytes) override;
  void free(void* p) override { std::free(p); }
  void copy_to_device(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy_to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  Result<Tensor> upload_weight(const Tensor& host_view) override { return host_view; }
  void sync() override {}
};

}  // namespace ferrum
