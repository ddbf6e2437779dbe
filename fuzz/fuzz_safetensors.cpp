// Any byte string must parse or fail with an error; never crash or read out of bounds.
#include <cstddef>
#include <cstdint>

#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ferrum::SafetensorsSet set;
  auto st = set.add_file(ferrum::MappedFile::from_memory(data, size, "fuzz.safetensors"));
  if (st.ok())
    for (const auto& [name, t] : set.tensors())
      if (t.nbytes > 0) (void)t.data[t.nbytes - 1];
  return 0;
}
