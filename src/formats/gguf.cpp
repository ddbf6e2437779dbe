#include "formats/gguf.h"

#include <cstring>
#include <limits>

namespace ferrum {

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8: return "u8";
    case GgufType::I8: return "i8";
    case GgufType::U16: return "u16";
    case GgufType::I16: return "i16";
    case GgufType::U32: return "u32";
    case GgufType::I32: return "i32";
    case GgufType::F32: return "f32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "string";
    case GgufType::ARRAY: return "array";
    case GgufType::U64: return "u64";
    case GgufType::I64: return "i64";
    case GgufType::F64: return "f64";
  }
  return "?";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
    case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64:
      return true;
    default:
      return false;
  }
}

double GgufValue::as_double() const {
  if (is_float()) return f;
  if (type == GgufType::I8 || type == GgufType::I16 || type == GgufType::I32 || type == GgufType::I64)
    return static_cast<double>(i);
  return static_cast<double>(u);
}

int64_t GgufValue::as_int() const {
  if (is_float()) return static_cast<int64_t>(f);
  if (type == GgufType::I8 || type == GgufType::I16 || type == GgufType::I32 || type == GgufType::I64)
    return i;
  return static_cast<int64_t>(u);
}

int64_t GgufTensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

namespace {

// Bounds-checked cursor over the mapping; every read reports where it failed.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  size_t pos() const { return pos_; }

  template <class T>
  Status read(T* out, const char* what) {
    if (n_ - pos_ < sizeof(T))
      return Error(std::string("truncated file while reading ") + what + " at byte " + std::to_string(pos_));
    std::memcpy(out, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return {};
  }
  Status read_string(std::string_view* out, const char* what) {
    uint64_t len = 0;
    FERRUM_TRY(read(&len, what));
    if (len > n_ - pos_)
      return Error(std::string("string length ") + std::to_string(len) + " of " + what +
                   " runs past end of file at byte " + std::to_string(pos_));
    *out = std::string_view(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return {};
  }
  size_t remaining() const { return n_ - pos_; }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

Status read_value(Reader& r, GgufType type, GgufValue* v, const std::string& key, int depth) {
  v->type = type;
  switch (type) {
    case GgufType::U8: { uint8_t x; FERRUM_TRY(r.read(&x, key.c_str())); v->u = x; return {}; }
    case GgufType::I8: { int8_t x; FERRUM_TRY(r.read(&x, key.c_str())); v->i = x; return {}; }
    case GgufType::U16: { uint16_t x; FERRUM_TRY(r.read(&x, key.c_str())); v->u = x; return {}; }
    case GgufType::I16: { int16_t x; FERRUM_TRY(r.read(&x, key.c_str())); v->i = x; return {}; }
    case GgufType::U32: { uint32_t x; FERRUM_TRY(r.read(&x, key.c_str())); v->u = x; return {}; }
    case GgufType::I32: { int32_t x; FERRUM_TRY(r.read(&x, key.c_str())); v->i = x; return {}; }
    case GgufType::U64: { uint64_t x; FERRUM_TRY(r.read(&x, key.c_str())); v->u = x; return {}; }
    case GgufType::I64: { int64_t x; FERRUM_TRY(r.read(&x, key.c_str())); v->i = x; return {}; }
    case GgufType::F32: { float x; FERRUM_TRY(r.read(&x, key.c_str())); v->f = x; return {}; }
    case GgufType::F64: { double x; FERRUM_TRY(r.read(&x, key.c_str())); v->f = x; return {}; }
    case GgufType::BOOL: {
      uint8_t x; FERRUM_TRY(r.read(&x, key.c_str()));
      if (x > 1) return Error("metadata '" + key + "': bool value " + std::to_string(x));
      v->u = x;
      return {};
    }
    case GgufType::STRING: return r.read_string(&v->str, key.c_str());
    case GgufType::ARRAY: {
      if (depth > 8) return Error("metadata '" + key + "': arrays nested too deeply");
      uint32_t et = 0;
      uint64_t count = 0;
      FERRUM_TRY(r.read(&et, key.c_str()));
      FERRUM_TRY(r.read(&count, key.c_str()));
      if (et > static_cast<uint32_t>(GgufType::F64))
        return Error("metadata '" + key + "': unknown array element type " + std::to_string(et));
      v->elem_type = static_cast<GgufType>(et);
      // Each element takes at least one byte (8 for strings): reject counts the file cannot hold
      // before reserving memory for them.
      size_t min_elem = scalar_size(v->elem_type);
      if (v->elem_type == GgufType::STRING || v->elem_type == GgufType::ARRAY) min_elem = 8;
      if (count > r.remaining() / min_elem)
        return Error("metadata '" + key + "': array of " + std::to_string(count) +
                     " elements runs past end of file");
      v->items.resize(count);
      for (uint64_t k = 0; k < count; ++k)
        FERRUM_TRY(read_value(r, v->elem_type, &v->items[k], key, depth + 1));
      return {};
    }
  }
  return Error("metadata '" + key + "': unknown value type " + std::to_string(static_cast<uint32_t>(type)));
}

}  // namespace

Result<std::unique_ptr<GgufFile>> GgufFile::open(const std::string& path, FileAccess access) {
  FERRUM_ASSIGN_OR_RETURN(auto file, MappedFile::open(path, access));
  return parse(std::move(file));
}

Result<std::unique_ptr<GgufFile>> GgufFile::parse(std::shared_ptr<MappedFile> file) {
  std::unique_ptr<GgufFile> g(new GgufFile());
  g->file_ = file;
  const std::string& path = file->path();
  auto fail = [&](const Status& st) -> Status { return st.with_context(path); };

  Reader r(file->data(), file->size());
  uint32_t magic = 0;
  if (!r.read(&magic, "magic").ok() || magic != 0x46554747u)  // "GGUF" little-endian
    return fail(Error("not a GGUF file (bad magic)"));
  if (auto st = r.read(&g->version_, "version"); !st.ok()) return fail(st);
  if (g->version_ != 2 && g->version_ != 3)
    return fail(Error("unsupported GGUF version " + std::to_string(g->version_) + " (need 2 or 3)"));
  uint64_t n_tensors = 0, n_kv = 0;
  if (auto st = r.read(&n_tensors, "tensor count"); !st.ok()) return fail(st);
  if (auto st = r.read(&n_kv, "metadata count"); !st.ok()) return fail(st);
  if (n_kv > r.remaining() / 12 || n_tensors > r.remaining() / 24)
    return fail(Error("header counts (" + std::to_string(n_kv) + " metadata, " +
                      std::to_string(n_tensors) + " tensors) exceed the file size"));

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string_view key;
    if (auto st = r.read_string(&key, "metadata key"); !st.ok()) return fail(st);
    uint32_t type = 0;
    std::string skey(key);
    if (auto st = r.read(&type, "metadata type"); !st.ok()) return fail(st);
    if (type > static_cast<uint32_t>(GgufType::F64))
      return fail(Error("metadata '" + skey + "': unknown value type " + std::to_string(type)));
    GgufValue v;
    if (auto st = read_value(r, static_cast<GgufType>(type), &v, skey, 0); !st.ok()) return fail(st);
    g->kv_[skey] = std::move(v);
  }

  if (const GgufValue* a = g->find("general.alignment")) {
    if (!a->is_integer() || a->as_int() <= 0 || (a->as_int() & (a->as_int() - 1)) != 0)
      return fail(Error("metadata 'general.alignment' must be a power of two"));
    g->alignment_ = static_cast<size_t>(a->as_int());
  }

  g->tensors_.resize(n_tensors);
  for (uint64_t t = 0; t < n_tensors; ++t) {
    GgufTensorInfo& ti = g->tensors_[t];
    std::string_view name;
    if (auto st = r.read_string(&name, "tensor name"); !st.ok()) return fail(st);
    ti.name = std::string(name);
    uint32_t n_dims = 0;
    if (auto st = r.read(&n_dims, "tensor dims"); !st.ok()) return fail(st);
    if (n_dims == 0 || n_dims > 4)
      return fail(Error("tensor '" + ti.name + "': " + std::to_string(n_dims) + " dimensions (1..4 allowed)"));
    ti.dims.resize(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t v = 0;
      if (auto st = r.read(&v, "tensor dim"); !st.ok()) return fail(st);
      if (v == 0 || v > (uint64_t{1} << 40))
        return fail(Error("tensor '" + ti.name + "': dimension " + std::to_string(d) + " = " + std::to_string(v)));
      ti.dims[d] = static_cast<int64_t>(v);
    }
    uint32_t type = 0;
    if (auto st = r.read(&type, "tensor type"); !st.ok()) return fail(st);
    const DTypeTraits* tr = dtype_traits(type);
    if (!tr) return fail(Error("tensor '" + ti.name + "': unknown tensor type " + dtype_id_name(type)));
    ti.type = static_cast<DType>(type);
    if (auto st = r.read(&ti.offset, "tensor offset"); !st.ok()) return fail(st);
    if (ti.dims[0] % tr->block_elems != 0)
      return fail(Error("tensor '" + ti.name + "': row length " + std::to_string(ti.dims[0]) +
                        " is not a multiple of the " + tr->name + " block size " +
                        std::to_string(tr->block_elems)));
    int64_t n = ti.n_elements();
    if (n <= 0 || n > (int64_t{1} << 42))
      return fail(Error("tensor '" + ti.name + "': element count out of range"));
    ti.nbytes = static_cast<size_t>(n / tr->block_elems) * static_cast<size_t>(tr->block_bytes);
    if (g->tensor_index_.count(ti.name)) return fail(Error("duplicate tensor '" + ti.name + "'"));
    g->tensor_index_[ti.name] = t;
  }

  size_t data_start = (r.pos() + g->alignment_ - 1) / g->alignment_ * g->alignment_;
  if (n_tensors > 0 && data_start > file->size())
    return fail(Error("data section starts past end of file"));
  for (auto& ti : g->tensors_) {
    if (ti.offset % g->alignment_ != 0)
      return fail(Error("tensor '" + ti.name + "': offset " + std::to_string(ti.offset) + " is not aligned to " +
                        std::to_string(g->alignment_)));
    size_t avail = file->size() - data_start;
    if (ti.offset > avail || ti.nbytes > avail - ti.offset)
      return fail(Error("tensor '" + ti.name + "': data [" + std::to_string(ti.offset) + ", +" +
                        std::to_string(ti.nbytes) + ") runs past end of file (" + std::to_string(avail) +
                        " data bytes)"));
    ti.data = file->data() + data_start + ti.offset;
  }
  return g;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Result<std::optional<std::string>> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::optional<std::string>();
  if (v->type != GgufType::STRING)
    return Error(path() + ": metadata '" + key + "' is " + gguf_type_name(v->type) + ", expected string");
  return std::optional<std::string>(std::string(v->str));
}

Result<std::optional<int64_t>> GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::optional<int64_t>();
  if (!v->is_integer())
    return Error(path() + ": metadata '" + key + "' is " + gguf_type_name(v->type) + ", expected integer");
  return std::optional<int64_t>(v->as_int());
}

Result<std::optional<double>> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::optional<double>();
  if (!v->is_float() && !v->is_integer())
    return Error(path() + ": metadata '" + key + "' is " + gguf_type_name(v->type) + ", expected number");
  return std::optional<double>(v->as_double());
}

Result<std::optional<bool>> GgufFile::get_bool(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::optional<bool>();
  if (v->type != GgufType::BOOL)
    return Error(path() + ": metadata '" + key + "' is " + gguf_type_name(v->type) + ", expected bool");
  return std::optional<bool>(v->u != 0);
}

}  // namespace ferrum
