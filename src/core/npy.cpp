#include "core/npy.h"

#include <cstring>
#include <fstream>
#include <sstream>

namespace ferrum {

Status write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  std::ostringstream hdr;
  hdr << "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    hdr << shape[i] << (shape.size() == 1 ? "," : (i + 1 < shape.size() ? ", " : ""));
    n *= shape[i];
  }
  hdr << "), }";
  std::string h = hdr.str();
  size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  if (!f) return Error(path + ": cannot open for writing");
  const char magic[] = "\x93NUMPY\x01\x00";
  f.write(magic, 8);
  uint16_t hl = static_cast<uint16_t>(h.size());
  f.write(reinterpret_cast<const char*>(&hl), 2);
  f.write(h.data(), static_cast<std::streamsize>(h.size()));
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * 4));
  if (!f) return Error(path + ": write failed");
  return {};
}

Result<NpyArray> read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Error(path + ": cannot open");
  char magic[8];
  f.read(magic, 8);
  if (!f || std::memcmp(magic, "\x93NUMPY", 6) != 0) return Error(path + ": not a .npy file");
  uint32_t hl = 0;
  if (magic[6] == 1) {
    uint16_t h16 = 0;
    f.read(reinterpret_cast<char*>(&h16), 2);
    hl = h16;
  } else {
    f.read(reinterpret_cast<char*>(&hl), 4);
  }
  std::string h(hl, '\0');
  f.read(h.data(), hl);
  if (!f) return Error(path + ": truncated header");
  auto field = [&](const std::string& key) -> std::string {
    size_t p = h.find("'" + key + "'");
    if (p == std::string::npos) return {};
    p = h.find(':', p);
    return p == std::string::npos ? std::string() : h.substr(p + 1);
  };
  std::string descr = field("descr");
  size_t q1 = descr.find('\''), q2 = descr.find('\'', q1 + 1);
  if (q1 == std::string::npos || q2 == std::string::npos) return Error(path + ": no descr");
  descr = descr.substr(q1 + 1, q2 - q1 - 1);
  if (field("fortran_order").find("True") < field("fortran_order").find(','))
    return Error(path + ": fortran order not supported");
  std::string sh = field("shape");
  NpyArray a;
  size_t open = sh.find('('), close = sh.find(')');
  std::string dims = sh.substr(open + 1, close - open - 1);
  std::stringstream ss(dims);
  std::string tok;
  int64_t n = 1;
  while (std::getline(ss, tok, ',')) {
    if (tok.find_first_of("0123456789") == std::string::npos) continue;
    a.shape.push_back(std::stoll(tok));
    n *= a.shape.back();
  }
  a.data.resize(static_cast<size_t>(n));
  auto read_as = [&](auto tag) -> Status {
    using T = decltype(tag);
    std::vector<T> tmp(static_cast<size_t>(n));
    f.read(reinterpret_cast<char*>(tmp.data()), static_cast<std::streamsize>(n * sizeof(T)));
    if (!f) return Error(path + ": truncated data");
    for (int64_t i = 0; i < n; ++i) a.data[i] = static_cast<float>(tmp[i]);
    return {};
  };
  if (descr == "<f4") FERRUM_TRY(read_as(float{}));
  else if (descr == "<f8") FERRUM_TRY(read_as(double{}));
  else if (descr == "<i4") FERRUM_TRY(read_as(int32_t{}));
  else if (descr == "<i8") FERRUM_TRY(read_as(int64_t{}));
  else return Error(path + ": unsupported dtype " + descr);
  return a;
}

}  // namespace ferrum
