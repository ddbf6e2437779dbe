#include "backend/cuda/cublas.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <string>

namespace ferrum::cuda {

namespace {

Result<const Cublas*> open_cublas() {
  const std::string name = fmt::format("libcublas.so.{}", CUBLAS_VER_MAJOR);
  void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const std::string first = dlerror();
    const std::string in_toolkit = std::string(FERRUM_CUDA_LIBRARY_DIR) + "/" + name;
    lib = dlopen(in_toolkit.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) return Error(fmt::format("cuda: cannot open cuBLAS: {}; {}", first, dlerror()));
  }
  static Cublas api;
  const auto bind = [lib, &name](const char* symbol, auto& fn) -> Status {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, symbol));
    if (!fn) return Error(fmt::format("cuda: {} has no {}", name, symbol));
    return {};
  };
  FERRUM_TRY(bind("cublasCreate_v2", api.create));
  FERRUM_TRY(bind("cublasDestroy_v2", api.destroy));
  FERRUM_TRY(bind("cublasSetStream_v2", api.set_stream));
  FERRUM_TRY(bind("cublasGemmEx", api.gemm_ex));
  return static_cast<const Cublas*>(&api);
}

}  // namespace

Result<const Cublas*> cublas() {
  static const Result<const Cublas*> api = open_cublas();
  return api;
}

}  // namespace ferrum::cuda
