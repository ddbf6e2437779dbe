#include "models/weights.h"

#include <fmt/format.h>

#include <filesystem>

#include "quant/matmul.h"

namespace ferrum {

namespace {
std::string dims_str(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

// Matches `name` against a pattern with "{}"/"{e}" placeholders; collects the numbers in order.
bool match(const std::string& pattern, const std::string& name, std::vector<std::string>* nums) {
  size_t pi = 0, ni = 0;
  while (pi < pattern.size()) {
    if (pattern.compare(pi, 2, "{}") == 0 || pattern.compare(pi, 3, "{e}") == 0) {
      pi += pattern.compare(pi, 2, "{}") == 0 ? 2 : 3;
      size_t start = ni;
      while (ni < name.size() && name[ni] >= '0' && name[ni] <= '9') ++ni;
      if (ni == start) return false;
      nums->push_back(name.substr(start, ni - start));
    } else {
      if (ni >= name.size() || name[ni] != pattern[pi]) return false;
      ++pi;
      ++ni;
    }
  }
  return ni == name.size();
}

std::string fill(const std::string& pattern, const std::vector<std::string>& nums) {
  std::string out;
  size_t k = 0;
  for (size_t i = 0; i < pattern.size();) {
    if (pattern.compare(i, 2, "{}") == 0 || pattern.compare(i, 3, "{e}") == 0) {
      i += pattern.compare(i, 2, "{}") == 0 ? 2 : 3;
      out += k < nums.size() ? nums[k++] : "";
    } else {
      out += pattern[i++];
    }
  }
  return out;
}
}  // namespace

std::string NameMap::translate(const std::string& name, bool to_hf) const {
  for (const NamePair& p : pairs_) {
    std::vector<std::string> nums;
    if (match(to_hf ? p.gguf : p.hf, name, &nums)) return fill(to_hf ? p.hf : p.gguf, nums);
  }
  return "";
}

bool NameMap::unused(const std::string& hf_name) const {
  for (const std::string& p : unused_hf_)
    if (hf_name.rfind(p, 0) == 0) return true;
  return false;
}

Result<std::unique_ptr<WeightStore>> WeightStore::open(const std::string& path, FileAccess access) {
  std::unique_ptr<WeightStore> w(new WeightStore());
  w->path_ = path;
  namespace fs = std::filesystem;
  if (!fs::exists(path)) return Error(path + ": no such file or folder");
  if (fs::is_directory(path)) {
    FERRUM_ASSIGN_OR_RETURN(w->config_, config_from_hf(path));
    FERRUM_ASSIGN_OR_RETURN(w->st_, SafetensorsSet::open(path, access));
  } else {
    FERRUM_ASSIGN_OR_RETURN(w->gguf_, GgufFile::open(path, access));
    FERRUM_ASSIGN_OR_RETURN(w->config_, config_from_gguf(*w->gguf_));
  }
  return w;
}

WeightStore::~WeightStore() {
  if (backend_)
    for (void* p : owned_) backend_->free(p);
}

Result<WeightStore::Raw> WeightStore::find_raw(const std::string& name) const {
  if (gguf_) {
    const GgufTensorInfo* t = gguf_->find_tensor(name);
    if (!t) return Error(path_ + ": missing tensor '" + name + "'");
    return Raw{t->type, t->dims, t->data, t->nbytes};
  }
  const std::string hf = hf_names_ ? hf_names_->to_hf(name) : name;
  const SafetensorsTensor* t = hf.empty() ? nullptr : st_->find(hf);
  if (!t) return Error(path_ + ": missing tensor '" + (hf.empty() ? name : hf) + "'");
  std::vector<int64_t> dims(t->shape.rbegin(), t->shape.rend());
  return Raw{t->type, dims, t->data, t->nbytes};
}

bool WeightStore::has(const std::string& name) const {
  if (gguf_) return gguf_->find_tensor(name) != nullptr;
  const std::string hf = hf_names_ ? hf_names_->to_hf(name) : name;
  return !hf.empty() && st_->find(hf) != nullptr;
}

Result<Tensor> WeightStore::matrix(const std::string& name, int64_t rows, int64_t cols, int64_t mats) {
  FERRUM_ASSIGN_OR_RETURN(Raw raw, find_raw(name));
  std::vector<int64_t> want = {cols, rows};
  if (mats > 1) want.push_back(mats);
  if (raw.dims != want)
    return Error(fmt::format("{}: tensor '{}' has shape {} but the config implies {}", path_, name,
                             dims_str(raw.dims), dims_str(want)));
  if (!quant::reference_matmul_kernel(raw.type))
    return Error(fmt::format("{}: tensor '{}' has type {}, which ferrum cannot compute with", path_, name,
                             dtype_name(raw.type)));
  Tensor t = Tensor::matrix_view(raw.type, const_cast<uint8_t*>(raw.data), rows, cols, mats);
  if (t.nb[2] * static_cast<size_t>(mats) != raw.nbytes)
    return Error(fmt::format("{}: tensor '{}' holds {} bytes, its shape needs {}", path_, name, raw.nbytes,
                             t.nb[2] * static_cast<size_t>(mats)));
  auto uploaded = backend_->upload_weight(t);
  if (!uploaded.ok()) return uploaded.status().with_context(fmt::format("{}: tensor '{}'", path_, name));
  const Tensor dev = uploaded.value();
  if (dev.data != t.data) owned_.push_back(dev.data);
  if (upload_progress_) {
    uploaded_ += raw.nbytes;
    if (uploaded_ - upload_reported_ >= upload_total_ / 100) {
      upload_progress_(std::min(uploaded_, upload_total_), upload_total_);
      upload_reported_ = uploaded_;
    }
  }
  return dev;
}

Result<Tensor> WeightStore::vector(const std::string& name, int64_t n) {
  FERRUM_ASSIGN_OR_RETURN(Raw raw, find_raw(name));
  int64_t count = 1;
  for (int64_t d : raw.dims) count *= d;
  if (count != n)
    return Error(fmt::format("{}: tensor '{}' has shape {} but the config implies [{}]", path_, name,
                             dims_str(raw.dims), n));
  if (raw.type != DType::F32 && raw.type != DType::F16 && raw.type != DType::BF16)
    return Error(fmt::format("{}: tensor '{}' has type {}; vectors must be F32, F16 or BF16", path_, name,
                             dtype_name(raw.type)));
  std::vector<float> host(static_cast<size_t>(n));
  quant::dequantize_row(raw.type, raw.data, host.data(), n);
  return own_vector(host);
}

Result<Tensor> WeightStore::own_vector(const std::vector<float>& host) {
  FERRUM_ASSIGN_OR_RETURN(void* mem, own_bytes(host.data(), host.size() * sizeof(float)));
  return Tensor::f32(static_cast<float*>(mem), 1, static_cast<int64_t>(host.size()));
}

Result<void*> WeightStore::own_bytes(const void* host, size_t bytes) {
  FERRUM_ASSIGN_OR_RETURN(void* mem, backend_->alloc(bytes));
  owned_.push_back(mem);
  backend_->copy_to_device(mem, host, bytes);
  return mem;
}

std::vector<WeightStore::TensorSummary> WeightStore::summary() const {
  std::vector<TensorSummary> out;
  if (gguf_) {
    for (auto& t : gguf_->tensors()) out.push_back({t.name, t.type, t.dims, t.nbytes});
  } else {
    for (auto& [name, t] : st_->tensors())
      out.push_back({name, t.type, std::vector<int64_t>(t.shape.rbegin(), t.shape.rend()), t.nbytes});
  }
  return out;
}

}  // namespace ferrum

namespace ferrum {
const std::map<std::string, SafetensorsTensor>& WeightStore::hf_tensors() const {
  static const std::map<std::string, SafetensorsTensor> kNone;
  return st_ ? st_->tensors() : kNone;
}
}  // namespace ferrum

namespace ferrum {
namespace {
std::vector<std::pair<const uint8_t*, size_t>> tensor_ranges(const GgufFile* gguf, const SafetensorsSet* st) {
  std::vector<std::pair<const uint8_t*, size_t>> ranges;
  if (gguf) {
    for (const GgufTensorInfo& t : gguf->tensors()) ranges.push_back({t.data, t.nbytes});
  } else {
    for (const auto& [name, t] : st->tensors()) ranges.push_back({t.data, t.nbytes});
  }
  return ranges;
}
}  // namespace

size_t WeightStore::tensor_bytes() const {
  size_t total = 0;
  for (const auto& r : tensor_ranges(gguf_.get(), st_.get())) total += r.second;
  return total;
}

void WeightStore::report_uploads(std::function<void(size_t, size_t)> progress) {
  upload_progress_ = std::move(progress);
  upload_total_ = tensor_bytes();
  uploaded_ = upload_reported_ = 0;
}

// Not every tensor is a matrix (norms are converted, some tensors are unused): the bar ends full.
void WeightStore::finish_uploads() {
  if (upload_progress_) upload_progress_(upload_total_, upload_total_);
  upload_progress_ = nullptr;
}

void WeightStore::prefetch(const std::function<void(size_t, size_t)>& progress) const {
  const std::vector<std::pair<const uint8_t*, size_t>> ranges = tensor_ranges(gguf_.get(), st_.get());
  size_t total = 0, done = 0, last = 0;
  for (auto& r : ranges) total += r.second;
  volatile uint8_t sink = 0;
  for (auto& [p, n] : ranges) {
    for (size_t off = 0; off < n; off += 4096) sink = sink + p[off];
    done += n;
    if (done - last >= total / 100 || done == total) {
      progress(done, total);
      last = done;
    }
  }
}
}  // namespace ferrum
