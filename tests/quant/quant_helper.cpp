// Command-line access to ferrum's (de)quantizers for the Python test, which compares them with gguf-py:
//   quant_helper dequant TYPE IN OUT         raw blocks of TYPE -> float32
//   quant_helper quant TYPE IN OUT           float32 -> raw blocks of TYPE
//   quant_helper dequant-gguf FILE OUTDIR    every tensor of a GGUF file -> OUTDIR/<name>.f32
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "formats/gguf.h"
#include "quant/matmul.h"
#include "quant/quantize.h"

namespace {

using ferrum::DType;

bool parse_type(const std::string& name, DType* out) {
  for (uint32_t id = 0; id <= 30; ++id) {
    const ferrum::DTypeTraits* t = ferrum::dtype_traits(id);
    if (t != nullptr && name == t->name) {
      *out = static_cast<DType>(id);
      return true;
    }
  }
  return false;
}

std::vector<char> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

bool write_all(const std::string& path, const void* data, size_t n) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  return static_cast<bool>(f);
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "quant_helper: %s\n", msg.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) return fail("usage: dequant|quant TYPE IN OUT, or dequant-gguf FILE OUTDIR");
  const std::string cmd = argv[1];
  if (cmd == "dequant-gguf" && argc == 4) {
    auto file = ferrum::GgufFile::open(argv[2]);
    if (!file.ok()) return fail(file.status().message());
    for (const ferrum::GgufTensorInfo& t : (*file)->tensors()) {
      if (!ferrum::quant::can_dequantize(t.type)) return fail(t.name + ": unsupported type");
      std::vector<float> out(static_cast<size_t>(t.n_elements()));
      ferrum::quant::dequantize_row(t.type, t.data, out.data(), t.n_elements());
      if (!write_all(std::string(argv[3]) + "/" + t.name + ".f32", out.data(), out.size() * sizeof(float)))
        return fail("cannot write " + t.name);
    }
    return 0;
  }
  DType type;
  if (argc != 5 || !parse_type(argv[2], &type)) return fail("bad arguments");
  const std::vector<char> in = read_all(argv[3]);
  const auto& tr = ferrum::traits(type);
  if (cmd == "dequant") {
    if (!ferrum::quant::can_dequantize(type)) return fail("cannot dequantize " + std::string(argv[2]));
    const int64_t n = static_cast<int64_t>(in.size() / static_cast<size_t>(tr.block_bytes)) * tr.block_elems;
    std::vector<float> out(static_cast<size_t>(n));
    ferrum::quant::dequantize_row(type, in.data(), out.data(), n);
    return write_all(argv[4], out.data(), out.size() * sizeof(float)) ? 0 : fail("write failed");
  }
  if (cmd == "quant") {
    if (!ferrum::quant::can_quantize(type)) return fail("cannot quantize " + std::string(argv[2]));
    const auto n = static_cast<int64_t>(in.size() / sizeof(float));
    if (n % tr.block_elems != 0) return fail("element count is not a multiple of the block size");
    std::vector<uint8_t> out(ferrum::row_bytes(type, n));
    ferrum::quant::quantize_row(type, reinterpret_cast<const float*>(in.data()), out.data(), n);
    return write_all(argv[4], out.data(), out.size()) ? 0 : fail("write failed");
  }
  return fail("unknown command " + cmd);
}
