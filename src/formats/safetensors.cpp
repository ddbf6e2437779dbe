#include "formats/safetensors.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

namespace ferrum {

namespace fs = std::filesystem;
using json = nlohmann::json;

Status SafetensorsSet::add_file(std::shared_ptr<MappedFile> file) {
  const std::string& path = file->path();
  if (file->size() < 8) return Error(path + ": truncated safetensors file (no header length)");
  uint64_t hlen = 0;
  std::memcpy(&hlen, file->data(), 8);
  if (hlen > file->size() - 8) return Error(path + ": header length " + std::to_string(hlen) + " runs past end of file");
  json header = json::parse(file->data() + 8, file->data() + 8 + hlen, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return Error(path + ": header is not a JSON object");
  const uint8_t* base = file->data() + 8 + hlen;
  size_t avail = file->size() - 8 - hlen;
  for (auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    auto where = path + ": tensor '" + name + "'";
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
      return Error(where + ": needs dtype, shape and data_offsets");
    if (!info["dtype"].is_string()) return Error(where + ": dtype is not a string");
    std::string dt = info["dtype"].get<std::string>();
    SafetensorsTensor t;
    t.name = name;
    t.file = path;
    size_t esize = 0;
    if (dt == "F32") { t.type = DType::F32; esize = 4; }
    else if (dt == "F16") { t.type = DType::F16; esize = 2; }
    else if (dt == "BF16") { t.type = DType::BF16; esize = 2; }
    else if (dt == "I32") { t.type = DType::I32; esize = 4; }
    else if (dt == "I64") { t.type = DType::I64; esize = 8; }
    else return Error(where + ": unsupported dtype " + dt + " (F32, F16, BF16, I32, I64 are supported)");
    if (!info["shape"].is_array()) return Error(where + ": shape is not an array");
    uint64_t n = 1;
    for (auto& d : info["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t{1} << 40)) return Error(where + ": bad shape entry");
      t.shape.push_back(d.get<int64_t>());
      n *= d.get<uint64_t>();
      if (n > (uint64_t{1} << 40)) return Error(where + ": too many elements");
    }
    auto& off = info["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      return Error(where + ": data_offsets must be two unsigned integers");
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > avail) return Error(where + ": data [" + std::to_string(b) + ", " + std::to_string(e) +
                                         ") runs past end of file");
    if (e - b != n * esize)
      return Error(where + ": " + std::to_string(e - b) + " bytes do not match shape (" + std::to_string(n * esize) + ")");
    t.data = base + b;
    t.nbytes = e - b;
    if (tensors_.count(name)) return Error(where + ": defined twice");
    tensors_[name] = std::move(t);
  }
  files_.push_back(std::move(file));
  return {};
}

Result<std::unique_ptr<SafetensorsSet>> SafetensorsSet::open(const std::string& path, FileAccess access) {
  auto set = std::make_unique<SafetensorsSet>();
  std::vector<std::string> files;
  if (fs::is_directory(path)) {
    fs::path index = fs::path(path) / "model.safetensors.index.json";
    if (fs::exists(index)) {
      std::ifstream in(index);
      json j = json::parse(in, nullptr, false);
      if (j.is_discarded() || !j.contains("weight_map") || !j["weight_map"].is_object())
        return Error(index.string() + ": no weight_map object");
      std::set<std::string> shard_names;
      for (auto& [k, v] : j["weight_map"].items()) {
        if (!v.is_string()) return Error(index.string() + ": weight_map['" + k + "'] is not a file name");
        shard_names.insert(v.get<std::string>());
      }
      for (auto& s : shard_names) files.push_back((fs::path(path) / s).string());
    } else if (fs::exists(fs::path(path) / "model.safetensors")) {
      files.push_back((fs::path(path) / "model.safetensors").string());
    } else {
      return Error(path + ": no model.safetensors or model.safetensors.index.json");
    }
  } else {
    files.push_back(path);
  }
  for (auto& f : files) {
    FERRUM_ASSIGN_OR_RETURN(auto mf, MappedFile::open(f, access));
    FERRUM_TRY(set->add_file(std::move(mf)));
  }
  return set;
}

const SafetensorsTensor* SafetensorsSet::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace ferrum
