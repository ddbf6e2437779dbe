#include "formats/gguf_writer.h"

#include <cstring>
#include <fstream>

namespace ferrum {

namespace {
template <class T>
void append(std::vector<uint8_t>& b, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  b.insert(b.end(), p, p + sizeof(T));
}
void append_str(std::vector<uint8_t>& b, std::string_view s) {
  append<uint64_t>(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}

void encode_payload(std::vector<uint8_t>& b, const GgufValue& v) {
  switch (v.type) {
    case GgufType::U8: append<uint8_t>(b, static_cast<uint8_t>(v.u)); break;
    case GgufType::I8: append<int8_t>(b, static_cast<int8_t>(v.i)); break;
    case GgufType::U16: append<uint16_t>(b, static_cast<uint16_t>(v.u)); break;
    case GgufType::I16: append<int16_t>(b, static_cast<int16_t>(v.i)); break;
    case GgufType::U32: append<uint32_t>(b, static_cast<uint32_t>(v.u)); break;
    case GgufType::I32: append<int32_t>(b, static_cast<int32_t>(v.i)); break;
    case GgufType::U64: append<uint64_t>(b, v.u); break;
    case GgufType::I64: append<int64_t>(b, v.i); break;
    case GgufType::F32: append<float>(b, static_cast<float>(v.f)); break;
    case GgufType::F64: append<double>(b, v.f); break;
    case GgufType::BOOL: append<uint8_t>(b, v.u ? 1 : 0); break;
    case GgufType::STRING: append_str(b, v.str); break;
    case GgufType::ARRAY:
      append<uint32_t>(b, static_cast<uint32_t>(v.elem_type));
      append<uint64_t>(b, v.items.size());
      for (const GgufValue& it : v.items) encode_payload(b, it);
      break;
  }
}
}  // namespace

void GgufWriter::put(const std::string& key, std::vector<uint8_t> encoded) {
  for (Meta& m : meta_)
    if (m.key == key) {
      m.encoded = std::move(encoded);
      return;
    }
  meta_.push_back({key, std::move(encoded)});
}

void GgufWriter::set_value(const std::string& key, const GgufValue& v) {
  std::vector<uint8_t> b;
  append<uint32_t>(b, static_cast<uint32_t>(v.type));
  encode_payload(b, v);
  put(key, std::move(b));
}

void GgufWriter::set_string(const std::string& key, const std::string& v) {
  std::vector<uint8_t> b;
  append<uint32_t>(b, static_cast<uint32_t>(GgufType::STRING));
  append_str(b, v);
  put(key, std::move(b));
}

void GgufWriter::set_u32(const std::string& key, uint32_t v) {
  std::vector<uint8_t> b;
  append<uint32_t>(b, static_cast<uint32_t>(GgufType::U32));
  append<uint32_t>(b, v);
  put(key, std::move(b));
}

void GgufWriter::set_i32(const std::string& key, int32_t v) {
  std::vector<uint8_t> b;
  append<uint32_t>(b, static_cast<uint32_t>(GgufType::I32));
  append<int32_t>(b, v);
  put(key, std::move(b));
}

void GgufWriter::set_f32(const std::string& key, float v) {
  std::vector<uint8_t> b;
  append<uint32_t>(b, static_cast<uint32_t>(GgufType::F32));
  append<float>(b, v);
  put(key, std::move(b));
}

void GgufWriter::set_bool(const std::string& key, bool v) {
  std::vector<uint8_t> b;
  append<uint32_t>(b, static_cast<uint32_t>(GgufType::BOOL));
  append<uint8_t>(b, v ? 1 : 0);
  put(key, std::move(b));
}

void GgufWriter::add_tensor(const std::string& name, DType type, std::vector<int64_t> dims, Producer produce) {
  int64_t rows = 1;
  for (size_t i = 1; i < dims.size(); ++i) rows *= dims[i];
  const size_t nbytes = row_bytes(type, dims[0]) * static_cast<size_t>(rows);
  tensors_.push_back({name, type, std::move(dims), nbytes, std::move(produce)});
}

Status GgufWriter::write(const std::string& path, const std::function<void(size_t, size_t)>& progress) const {
  constexpr size_t kAlign = 32;
  std::vector<uint8_t> head;
  append<uint32_t>(head, 0x46554747u);
  append<uint32_t>(head, 3);
  append<uint64_t>(head, tensors_.size());
  append<uint64_t>(head, meta_.size());
  for (const Meta& m : meta_) {
    append_str(head, m.key);
    head.insert(head.end(), m.encoded.begin(), m.encoded.end());
  }
  size_t offset = 0;
  for (const TensorEntry& t : tensors_) {
    append_str(head, t.name);
    append<uint32_t>(head, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) append<uint64_t>(head, static_cast<uint64_t>(d));
    append<uint32_t>(head, static_cast<uint32_t>(t.type));
    append<uint64_t>(head, offset);
    offset += (t.nbytes + kAlign - 1) / kAlign * kAlign;
  }
  head.resize((head.size() + kAlign - 1) / kAlign * kAlign, 0);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return Error(path + ": cannot open for writing");
  f.write(reinterpret_cast<const char*>(head.data()), static_cast<std::streamsize>(head.size()));
  std::vector<uint8_t> buf;
  const char zeros[kAlign] = {};
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const TensorEntry& t = tensors_[i];
    buf.clear();
    FERRUM_TRY(t.produce(buf).with_context("tensor '" + t.name + "'"));
    if (buf.size() != t.nbytes)
      return Error("tensor '" + t.name + "': produced " + std::to_string(buf.size()) + " bytes, expected " +
                   std::to_string(t.nbytes));
    f.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
    f.write(zeros, static_cast<std::streamsize>((kAlign - t.nbytes % kAlign) % kAlign));
    if (!f) return Error(path + ": write failed");
    if (progress) progress(i + 1, tensors_.size());
  }
  return {};
}

}  // namespace ferrum
