// Any byte string must parse or fail with an error; never crash or read out of bounds.
#include <cstddef>
#include <cstdint>

#include "formats/gguf.h"
#include "ferrum/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = ferrum::MappedFile::from_memory(data, size, "fuzz.gguf");
  auto g = ferrum::GgufFile::parse(file);
  if (g.ok()) {
    auto cfg = ferrum::config_from_gguf(*g.value());
    (void)cfg;
    for (const auto& t : g.value()->tensors())
      if (t.nbytes > 0) (void)t.data[t.nbytes - 1];  // every tensor view lies inside the input
  }
  return 0;
}
