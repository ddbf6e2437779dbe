#include "backend/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cuda/cublas.h"
#include "backend/cuda/kernels.h"

namespace ferrum {

namespace {

using cuda::CFMat;
using cuda::FMat;
using cuda::WMat;

constexpr size_t kStagingBytes = size_t{4} << 20;  // pinned buffer for small host-to-device copies
constexpr int64_t kTileElems = int64_t{32}
                               << 20;  // weight elements decoded per cuBLAS tile (2 x 64 MiB of f16)

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

FMat fmat(const Tensor& t) {
  return {static_cast<float*>(t.data), t.rows(), t.cols(),
          static_cast<int64_t>(t.row_stride() / sizeof(float))};
}
CFMat cfmat(const Tensor& t) {
  return {static_cast<const float*>(t.data), t.rows(), t.cols(),
          static_cast<int64_t>(t.row_stride() / sizeof(float))};
}
WMat wmat(const Tensor& t) {
  return {t.type, static_cast<const uint8_t*>(t.data), t.rows(), t.cols(), t.row_stride()};
}
cuda::EMat emat(const ExpertMatrices& m) { return {m.type, m.mats, m.rows, m.cols, m.row_bytes}; }
cuda::Routing routing(const MoeRouting& r) {
  return {r.n_tokens, r.n_experts, r.k, r.ids, r.weights, r.offsets, r.order, r.rank};
}

const char* blas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "architecture mismatch";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "execution failed";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "not supported";
    default:
      return "error";
  }
}

class CudaGraph final : public StepGraph {
 public:
  explicit CudaGraph(cudaGraphExec_t exec) : exec_(exec) {}
  ~CudaGraph() override { cudaGraphExecDestroy(exec_); }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  cudaGraphExec_t exec() const { return exec_; }

 private:
  cudaGraphExec_t exec_;
};

class CudaBackend final : public Backend {
 public:
  static Result<std::unique_ptr<Backend>> create(int device, bool exact_gemm);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return "cuda"; }
  std::string describe() const override;

  Result<void*> alloc(size_t bytes) override;
  void free(void* p) override;
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  Result<Tensor> upload_weight(const Tensor& host_view) override;
  bool reads_host_weights() const override { return false; }
  std::optional<MemoryInfo> device_memory() const override;
  void sync() override;
  Status check() override;
  bool can_record() const override { return true; }
  void record_begin() override;
  Result<std::unique_ptr<StepGraph>> record_end() override;
  void replay(const StepGraph& graph) override;

  void embed(const Tensor& table, const int32_t* ids, Tensor out) override;
  void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor out) override;
  void add_rms_norm(Tensor x, const Tensor& y, const Tensor& w, float eps, Tensor out) override;
  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor out) override;
  void add(Tensor x, const Tensor& y) override;
  void add_bias(Tensor x, const Tensor& bias) override;
  void matmul(const Tensor& x, const Tensor& w, Tensor out) override;
  void matmul_group(const Tensor& x, std::span<const MatmulOut> outs) override;
  void rope(Tensor x, int64_t n_heads, const RopeParams& p, const int32_t* positions) override;
  void rope_and_cache(const RopeAndCache& a) override;
  void kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                const int32_t* slots) override;
  void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const AttentionLayout& layout,
                 const AttentionParams& p, Tensor out) override;
  void silu_mul(const Tensor& gate, const Tensor& up, Tensor out) override;
  void gelu_tanh_mul(const Tensor& gate, const Tensor& up, Tensor out) override;
  void gelu_erf(Tensor x) override;
  void scale(Tensor x, float s) override;
  void softcap(Tensor x, float cap) override;
  void gather_rows(const Tensor& x, const int32_t* rows, Tensor out) override;
  void argmax_rows(const Tensor& x, int32_t* out) override;
  void moe_route(const Tensor& logits, bool normalize, const MoeRouting& r) override;
  void expert_gate_up_silu(const Tensor& x, const ExpertMatrices& gate, const ExpertMatrices& up,
                           const MoeRouting& r, Tensor out) override;
  void expert_matmul(const Tensor& x, const ExpertMatrices& w, const MoeRouting& r, Tensor out) override;
  void moe_combine(const Tensor& y, const MoeRouting& r, Tensor out) override;

 private:
  CudaBackend(int device, bool exact_gemm) : device_(device), exact_gemm_(exact_gemm) {}
  // Keeps the first failure until check() reports it (ops have no error return; CUDA errors of
  // queued work surface only at a later synchronization anyway).
  void note(const char* op, cudaError_t e);
  void note_blas(const char* op, cublasStatus_t s);
  void fail(Status st) {
    if (error_.ok()) error_ = std::move(st);
  }
  void wait();
  // Grows the scratch of the ops that need one (cuBLAS-path tiles, expert gate/up products, 8-bit
  // activations, split attention's chunk states) to `bytes`; false (with the error noted) when that fails.
  // Ops run in stream order, so each may use all of it.
  bool reserve_scratch(size_t bytes);
  // The 8-bit-activation GEMVs' arguments (after reserve_scratch).
  cuda::GemvInt8 int8_gemv() const { return {true, scratch_, prop_.multiProcessorCount}; }
  void gemm(const Tensor& x, const Tensor& w, Tensor out);

  int device_;
  bool exact_gemm_;
  cudaDeviceProp prop_{};
  cudaStream_t stream_ = nullptr;
  const cuda::Cublas* cublas_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  uint8_t* staging_ = nullptr;  // pinned; [0, staged_) may still be in flight
  size_t staged_ = 0;
  void* scratch_ = nullptr;
  size_t scratch_cap_ = 0;
  unsigned* attn_counters_ = nullptr;  // split attention steps' arrival counts (cuda::kAttnCounters)
  std::vector<void*> retired_;         // outgrown scratch buffers
  Status error_;
};

Result<std::unique_ptr<Backend>> CudaBackend::create(int device, bool exact_gemm) {
  const int n = cuda_device_count();
  if (device < 0 || device >= n)
    return Error(n == 0 ? std::string("cuda: no CUDA device is available")
                        : fmt::format("cuda: device {} does not exist ({} available)", device, n));
  std::unique_ptr<CudaBackend> b(new CudaBackend(device, exact_gemm));
  auto check_cuda = [](cudaError_t e, const char* what) -> Status {
    if (e == cudaSuccess) return {};
    return Error(fmt::format("cuda: {}: {}", what, cudaGetErrorString(e)));
  };
  FERRUM_TRY(check_cuda(cudaSetDevice(device), "cudaSetDevice"));
  FERRUM_TRY(check_cuda(cudaGetDeviceProperties(&b->prop_, device), "cudaGetDeviceProperties"));
  if (b->prop_.major < 9)
    return Error(
        fmt::format("cuda: {} has compute capability {}.{}; ferrum's CUDA kernels need 9.0 (Hopper) or newer",
                    b->prop_.name, b->prop_.major, b->prop_.minor));
  FERRUM_TRY(check_cuda(cudaStreamCreateWithFlags(&b->stream_, cudaStreamNonBlocking), "cudaStreamCreate"));
  FERRUM_TRY(
      check_cuda(cudaHostAlloc(reinterpret_cast<void**>(&b->staging_), kStagingBytes, cudaHostAllocDefault),
                 "cudaHostAlloc"));
  FERRUM_TRY(check_cuda(cuda::init_attention(), "attention kernel attributes"));
  auto counters = b->alloc(cuda::kAttnCounters * sizeof(unsigned));
  if (!counters.ok()) return counters.status().with_context("cuda attention counters");
  b->attn_counters_ = static_cast<unsigned*>(counters.value());
  FERRUM_TRY(
      check_cuda(cudaMemsetAsync(b->attn_counters_, 0, cuda::kAttnCounters * sizeof(unsigned), b->stream_),
                 "attention counters"));
  FERRUM_TRY(check_cuda(cuda::init_kquant_gemv(), "GEMV kernel attributes"));
  FERRUM_TRY(check_cuda(cuda::init_kquant_batch(), "batched k-quant kernel attributes"));
  FERRUM_ASSIGN_OR_RETURN(b->cublas_, cuda::cublas());
  if (cublasStatus_t s = b->cublas_->create(&b->blas_); s != CUBLAS_STATUS_SUCCESS)
    return Error(std::string("cuda: cublasCreate: ") + blas_status_name(s));
  if (cublasStatus_t s = b->cublas_->set_stream(b->blas_, b->stream_); s != CUBLAS_STATUS_SUCCESS)
    return Error(std::string("cuda: cublasSetStream: ") + blas_status_name(s));
  return std::unique_ptr<Backend>(std::move(b));
}

CudaBackend::~CudaBackend() {
  if (stream_) cudaStreamSynchronize(stream_);
  if (blas_) cublas_->destroy(blas_);
  if (scratch_) cudaFree(scratch_);
  for (void* p : retired_) cudaFree(p);
  if (attn_counters_) cudaFree(attn_counters_);
  if (staging_) cudaFreeHost(staging_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::string CudaBackend::describe() const {
  return fmt::format(
      "cuda ({}, sm_{}{}, {} SMs, {:.0f} GiB, device {}); matmul: GEMV up to {} tokens, Q4_K/Q6_K/Q8_0 "
      "batched tensor-core kernels up to {} tokens, cuBLAS above (F32 in fp32; F16/BF16/quantized {}; fp32 "
      "accumulation)",
      prop_.name, prop_.major, prop_.minor, prop_.multiProcessorCount,
      double(prop_.totalGlobalMem) / double(1 << 30), device_, cuda::kGemvMaxTokens, cuda::kKquantMaxTokens,
      exact_gemm_ ? "as two-term 16-bit splits (--exact-gemm)" : "one 16-bit product");
}

void CudaBackend::note(const char* op, cudaError_t e) {
  if (e != cudaSuccess) fail(Error(fmt::format("cuda {}: {}", op, cudaGetErrorString(e))));
}

void CudaBackend::note_blas(const char* op, cublasStatus_t s) {
  if (s != CUBLAS_STATUS_SUCCESS) fail(Error(fmt::format("cuda {}: cuBLAS {}", op, blas_status_name(s))));
}

void CudaBackend::wait() {
  note("synchronize", cudaStreamSynchronize(stream_));
  staged_ = 0;
}

Result<void*> CudaBackend::alloc(size_t bytes) {
  void* p = nullptr;
  if (cudaError_t e = cudaMalloc(&p, bytes); e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    return Error(
        fmt::format("cuda: cannot allocate {:.1f} MiB of device memory ({}; {:.1f} of {:.1f} MiB free)",
                    double(bytes) / (1 << 20), cudaGetErrorString(e), double(free_b) / (1 << 20),
                    double(total_b) / (1 << 20)));
  }
  return p;
}

void CudaBackend::free(void* p) {
  if (p) note("free", cudaFree(p));
}

// Small copies go through the pinned staging buffer, so the caller's memory is reusable at once and
// the copy stays asynchronous; the buffer is recycled at every synchronization. Large copies (load
// time) wait for completion instead.
void CudaBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (bytes <= kStagingBytes) {
    const size_t need = round_up(bytes, 256);
    if (staged_ + need > kStagingBytes) wait();
    std::memcpy(staging_ + staged_, src, bytes);
    note("copy_to_device", cudaMemcpyAsync(dst, staging_ + staged_, bytes, cudaMemcpyHostToDevice, stream_));
    staged_ += need;
    return;
  }
  note("copy_to_device", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  wait();
}

void CudaBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  note("copy_to_host", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  wait();
}

Result<Tensor> CudaBackend::upload_weight(const Tensor& host_view) {
  const size_t bytes = host_view.nb[2] * static_cast<size_t>(host_view.ne[2]);
  FERRUM_ASSIGN_OR_RETURN(void* mem, alloc(bytes));
  Tensor t = host_view;
  t.data = mem;
  if (cudaError_t e = cudaMemcpyAsync(mem, host_view.data, bytes, cudaMemcpyHostToDevice, stream_);
      e != cudaSuccess || (e = cudaStreamSynchronize(stream_)) != cudaSuccess) {
    cudaFree(mem);
    return Error(fmt::format("cuda: weight upload of {} bytes: {}", bytes, cudaGetErrorString(e)));
  }
  return t;
}

std::optional<Backend::MemoryInfo> CudaBackend::device_memory() const {
  MemoryInfo m;
  if (cudaMemGetInfo(&m.free, &m.total) != cudaSuccess) {
    cudaGetLastError();
    return std::nullopt;
  }
  return m;
}

void CudaBackend::sync() { wait(); }

// Thread-local capture: another thread's CUDA calls (a second runtime) neither join nor break it.
void CudaBackend::record_begin() {
  note("record", cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
}

Result<std::unique_ptr<StepGraph>> CudaBackend::record_end() {
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(stream_, &graph);
  if (e != cudaSuccess || !error_.ok()) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    Status st =
        error_.ok() ? Error(fmt::format("cuda record: {}", cudaGetErrorString(e))) : std::move(error_);
    error_ = Status();
    return st;
  }
  cudaGraphExec_t exec = nullptr;
  e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return Error(fmt::format("cuda record: instantiating the graph: {}", cudaGetErrorString(e)));
  }
  return std::unique_ptr<StepGraph>(new CudaGraph(exec));
}

void CudaBackend::replay(const StepGraph& graph) {
  note("replay", cudaGraphLaunch(static_cast<const CudaGraph&>(graph).exec(), stream_));
}

Status CudaBackend::check() {
  wait();
  Status st = std::move(error_);
  error_ = Status();
  return st;
}

void CudaBackend::embed(const Tensor& table, const int32_t* ids, Tensor out) {
  if (!cuda::weight_type_supported(table.type))
    return fail(Error(fmt::format("cuda embed: no decoder for type {}", dtype_name(table.type))));
  note("embed", cuda::embed(stream_, wmat(table), ids, fmat(out)));
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor out) {
  note("rms_norm",
       cuda::rms_norm(stream_, fmat(x), CFMat{}, static_cast<const float*>(w.data), eps, fmat(out)));
}

void CudaBackend::add_rms_norm(Tensor x, const Tensor& y, const Tensor& w, float eps, Tensor out) {
  note("add_rms_norm",
       cuda::rms_norm(stream_, fmat(x), cfmat(y), static_cast<const float*>(w.data), eps, fmat(out)));
}

void CudaBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor out) {
  note("layer_norm", cuda::layer_norm(stream_, cfmat(x), static_cast<const float*>(w.data),
                                      static_cast<const float*>(b.data), eps, fmat(out)));
}

void CudaBackend::add(Tensor x, const Tensor& y) { note("add", cuda::add(stream_, fmat(x), cfmat(y))); }

void CudaBackend::add_bias(Tensor x, const Tensor& bias) {
  note("add_bias", cuda::add_bias(stream_, fmat(x), static_cast<const float*>(bias.data)));
}

void CudaBackend::matmul(const Tensor& x, const Tensor& w, Tensor out) {
  if (!cuda::weight_type_supported(w.type))
    return fail(Error(fmt::format("cuda matmul: no kernel for weight type {}", dtype_name(w.type))));
  const bool int8 = !exact_gemm_;
  const cuda::WMat wm = wmat(w);
  const cuda::FMat y = fmat(out);
  if (int8 && cuda::int8_gemv_applies(wm, cfmat(x))) {
    if (!reserve_scratch(cuda::int8_gemv_scratch_bytes(cfmat(x)))) return;
    return note("matmul", cuda::kquant_gemv_group(stream_, cfmat(x), &wm, &y, 1, int8_gemv()));
  }
  if (x.rows() <= cuda::kGemvMaxTokens) return note("matmul", cuda::gemv(stream_, wm, cfmat(x), y));
  if (cuda::kquant_batch_applies(wm, cfmat(x)))
    return note("matmul", cuda::kquant_batch_group(stream_, cfmat(x), &wm, &y, 1));
  gemm(x, w, out);
}

// The group's products with their own GEMVs (small steps: Q4_K, Q6_K, Q8_0, F16, BF16; and the 8-bit-
// activation ones for up to 64 tokens) go through one kquant_gemv_group call, Q4_K / Q6_K / Q8_0 ones of
// batched steps through one kquant_batch_group call (one launch per type either way); other products run
// as single matmuls.
void CudaBackend::matmul_group(const Tensor& x, std::span<const MatmulOut> outs) {
  const cuda::CFMat cx = cfmat(x);
  struct List {
    cuda::WMat w[cuda::kMaxGemvGroup];
    cuda::FMat y[cuda::kMaxGemvGroup];
    int n = 0;
  } gemvs, batched;
  const bool small = x.rows() <= cuda::kGemvMaxTokens, int8 = !exact_gemm_;
  for (const MatmulOut& m : outs) {
    const cuda::WMat w = wmat(*m.w);
    List* list = nullptr;
    if (small ? cuda::kquant_gemv_applies(w, cx) : int8 && cuda::int8_gemv_applies(w, cx))
      list = &gemvs;
    else if (!small && cuda::kquant_batch_applies(w, cx))
      list = &batched;
    if (list && list->n < cuda::kMaxGemvGroup) {
      list->w[list->n] = w;
      list->y[list->n++] = fmat(m.out);
    } else {
      matmul(x, *m.w, m.out);
    }
  }
  if (gemvs.n > 0 && (!int8 || reserve_scratch(cuda::int8_gemv_scratch_bytes(cx))))
    note("matmul", cuda::kquant_gemv_group(stream_, cx, gemvs.w, gemvs.y, gemvs.n,
                                           int8 ? int8_gemv() : cuda::GemvInt8{}));
  if (batched.n > 0) note("matmul", cuda::kquant_batch_group(stream_, cx, batched.w, batched.y, batched.n));
}

bool CudaBackend::reserve_scratch(size_t bytes) {
  if (bytes <= scratch_cap_) return true;
  // The old buffer stays allocated until the backend goes: recorded steps may still use it.
  if (scratch_) retired_.push_back(scratch_);
  scratch_ = nullptr;
  scratch_cap_ = 0;
  auto mem = alloc(bytes);
  if (!mem.ok()) {
    fail(mem.status().with_context("cuda scratch"));
    return false;
  }
  scratch_ = mem.value();
  scratch_cap_ = bytes;
  return true;
}

// out^T = W x^T in cuBLAS's column-major terms: W is row-major [rows, k] = column-major [k, rows]
// (op T), x row-major [n, k] = column-major [k, n], out row-major [n, rows] = column-major [rows, n].
void CudaBackend::gemm(const Tensor& x, const Tensor& w, Tensor out) {
  const int n = static_cast<int>(x.rows()), k = static_cast<int>(w.cols()), rows = static_cast<int>(w.rows());
  const int ldy = static_cast<int>(out.row_stride() / sizeof(float));
  const float one = 1.0f, zero = 0.0f;
  float* y = static_cast<float*>(out.data);
  if (w.type == DType::F32) {
    // CUBLAS_COMPUTE_32F keeps full fp32 products (no TF32).
    return note_blas("matmul", cublas_->gemm_ex(blas_, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, k, &one, w.data,
                                                CUDA_R_32F, static_cast<int>(w.row_stride() / 4), x.data,
                                                CUDA_R_32F, static_cast<int>(x.row_stride() / 4), &zero, y,
                                                CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  // 16-bit tensor-core products with fp32 accumulation. By default one product: a quantized weight is
  // decoded to f16, F16/BF16 weights are used as stored, and activations are rounded to the weight's
  // 16-bit type. This is llama.cpp's cuBLAS numerics; the rounding (2^-11 relative for f16, 2^-8 for
  // bf16) is below the quantization error of quantized weights and no coarser than llama.cpp's 8-bit
  // activation blocks. With --exact-gemm the products are made as exact as float32 ones by splitting
  // 16-bit-inexact operands into hi + lo halves: activations always (x = xh + xl), quantized weights
  // decoded tile by tile (w = wh + wl), F16/BF16 weights never (they are exact). BF16 weights pair with
  // bf16 halves (about 16 bits of each activation kept), every other type with IEEE halves (about 22
  // bits; the dropped wl xl term is ~2^-22 of the product).
  const bool bf16 = w.type == DType::BF16;
  const bool direct = bf16 || w.type == DType::F16;
  const bool single = !exact_gemm_;
  const cudaDataType_t t16 = bf16 ? CUDA_R_16BF : CUDA_R_16F;
  const size_t act_bytes = round_up(static_cast<size_t>(n) * static_cast<size_t>(k) * 2, 256);
  const int tile_rows =
      direct ? rows
             : static_cast<int>(std::min<int64_t>(rows, std::max<int64_t>(256, kTileElems / k / 256 * 256)));
  const size_t tile_bytes =
      direct ? 0 : round_up(static_cast<size_t>(tile_rows) * static_cast<size_t>(k) * 2, 256);
  const size_t halves = single ? 1 : 2;  // hi only, or hi and lo, of activations and weight tiles
  if (!reserve_scratch(halves * (act_bytes + tile_bytes))) return;
  uint8_t* base = static_cast<uint8_t*>(scratch_);
  uint8_t* wh = base + halves * act_bytes;
  void *xh = base, *xl = single ? nullptr : base + act_bytes, *wl = single ? nullptr : wh + tile_bytes;
  note("matmul", cuda::split_activations(stream_, cfmat(x), bf16, xh, xl));
  auto product = [&](const void* a, int lda, int nr, const void* b, const float* beta, float* c) {
    note_blas("matmul",
              cublas_->gemm_ex(blas_, CUBLAS_OP_T, CUBLAS_OP_N, nr, n, k, &one, a, t16, lda, b, t16, k, beta,
                               c, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  for (int r0 = 0; r0 < rows; r0 += tile_rows) {
    const int nr = std::min(tile_rows, rows - r0);
    if (direct) {
      const void* a = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r0) * w.row_stride();
      const int lda = static_cast<int>(w.row_stride() / 2);
      product(a, lda, nr, xh, &zero, y + r0);
      if (!single) product(a, lda, nr, xl, &one, y + r0);
    } else {
      note("matmul", cuda::dequant_rows_f16(stream_, wmat(w), r0, nr, wh, wl));
      product(wh, k, nr, xh, &zero, y + r0);
      if (single) continue;
      product(wh, k, nr, xl, &one, y + r0);
      product(wl, k, nr, xh, &one, y + r0);
    }
  }
}

void CudaBackend::rope(Tensor x, int64_t n_heads, const RopeParams& p, const int32_t* positions) {
  note("rope", cuda::rope(stream_, fmat(x), n_heads, p.head_dim, p.rope_dim, p.style == RopeStyle::Neox,
                          p.inv_freq, positions));
}

void CudaBackend::rope_and_cache(const RopeAndCache& a) {
  if (a.rope.head_dim > cuda::kMaxHeadDim) return Backend::rope_and_cache(a);
  const auto data = [](const Tensor& t) { return t.empty() ? nullptr : static_cast<const float*>(t.data); };
  const cuda::RopeCacheArgs args{
      fmat(a.q),       fmat(a.k),       cfmat(a.v),      a.n_heads,
      a.n_kv_heads,    a.rope.head_dim, a.rope.rope_dim, a.rope.style == RopeStyle::Neox,
      a.rope.inv_freq, a.positions,     data(a.q_norm),  data(a.k_norm),
      a.eps,           fmat(a.k_cache), fmat(a.v_cache), a.slots};
  note("rope_and_cache", cuda::rope_and_cache(stream_, args));
}

void CudaBackend::kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                           const int32_t* slots) {
  note("kv_write", cuda::kv_write(stream_, fmat(k_cache), fmat(v_cache), cfmat(k), cfmat(v), slots));
}

void CudaBackend::attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                            const AttentionLayout& L, const AttentionParams& p, Tensor out) {
  if (!cuda::attention_applies(p.head_dim, cfmat(q), cfmat(k_cache), cfmat(v_cache)))
    return fail(
        Error(fmt::format("cuda attention: head_dim {} (a multiple of 4 up to {}, rows of a multiple of 4 "
                          "floats) not supported",
                          p.head_dim, cuda::kMaxHeadDim)));
  const cuda::AttnArgs a{L.n_tokens, L.kv_end,     L.seq_index, L.block_tables, L.max_blocks, L.block_size,
                         p.n_heads,  p.n_kv_heads, p.head_dim,  p.scale,        p.window};
  cuda::AttnSplit split = cuda::attention_split(a, prop_.multiProcessorCount);
  if (split.splits > 1) {
    if (!reserve_scratch(cuda::attention_scratch_bytes(a, split))) return;
    split.scratch = static_cast<float*>(scratch_);
    split.counters = attn_counters_;
  }
  note("attention", cuda::attention(stream_, a, split, cfmat(q), cfmat(k_cache), cfmat(v_cache), fmat(out)));
}

void CudaBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor out) {
  note("silu_mul", cuda::glu(stream_, cuda::Glu::Silu, cfmat(gate), cfmat(up), fmat(out)));
}

void CudaBackend::gelu_tanh_mul(const Tensor& gate, const Tensor& up, Tensor out) {
  note("gelu_tanh_mul", cuda::glu(stream_, cuda::Glu::GeluTanh, cfmat(gate), cfmat(up), fmat(out)));
}

void CudaBackend::gelu_erf(Tensor x) { note("gelu_erf", cuda::gelu_erf(stream_, fmat(x))); }

void CudaBackend::scale(Tensor x, float s) { note("scale", cuda::scale(stream_, fmat(x), s)); }
void CudaBackend::softcap(Tensor x, float cap) { note("softcap", cuda::softcap(stream_, fmat(x), cap)); }

void CudaBackend::gather_rows(const Tensor& x, const int32_t* rows, Tensor out) {
  note("gather_rows", cuda::gather_rows(stream_, cfmat(x), rows, fmat(out)));
}

void CudaBackend::argmax_rows(const Tensor& x, int32_t* out) {
  note("argmax_rows", cuda::argmax_rows(stream_, cfmat(x), out));
}

void CudaBackend::moe_route(const Tensor& logits, bool normalize, const MoeRouting& r) {
  if (r.n_experts > cuda::kMaxExperts || r.k > r.n_experts)
    return fail(Error(fmt::format("cuda moe_route: {} of {} experts is unsupported (at most {} experts)", r.k,
                                  r.n_experts, cuda::kMaxExperts)));
  note("moe_route", cuda::moe_route(stream_, cfmat(logits), normalize, routing(r)));
}

void CudaBackend::expert_gate_up_silu(const Tensor& x, const ExpertMatrices& gate, const ExpertMatrices& up,
                                      const MoeRouting& r, Tensor out) {
  for (DType t : {gate.type, up.type})
    if (!cuda::weight_type_supported(t))
      return fail(
          Error(fmt::format("cuda expert_gate_up_silu: no kernel for weight type {}", dtype_name(t))));
  const cuda::EMat g = emat(gate), u = emat(up);
  if (!exact_gemm_ && gate.type == up.type && cuda::expert_int8_applies(g, cfmat(x))) {
    if (!reserve_scratch(cuda::expert_int8_scratch_bytes(cfmat(x), routing(r)))) return;
    return note("expert_gate_up_silu",
                cuda::expert_int8_gemv(stream_, g, &u, cfmat(x), true, routing(r), fmat(out), scratch_));
  }
  if (gate.type == up.type)
    return note("expert_gate_up_silu",
                cuda::expert_gemv(stream_, g, &u, cfmat(x), true, routing(r), fmat(out)));
  // Mixed types: the two products separately, then the activation.
  const int64_t n_pairs = r.n_tokens * r.k;
  if (!reserve_scratch(static_cast<size_t>(n_pairs * up.rows) * sizeof(float))) return;
  const FMat tmp{static_cast<float*>(scratch_), n_pairs, up.rows, up.rows};
  note("expert_gate_up_silu", cuda::expert_gemv(stream_, g, nullptr, cfmat(x), true, routing(r), fmat(out)));
  note("expert_gate_up_silu", cuda::expert_gemv(stream_, u, nullptr, cfmat(x), true, routing(r), tmp));
  note("expert_gate_up_silu",
       cuda::glu(stream_, cuda::Glu::Silu, cfmat(out), CFMat{tmp.p, tmp.rows, tmp.cols, tmp.ld}, fmat(out)));
}

void CudaBackend::expert_matmul(const Tensor& x, const ExpertMatrices& w, const MoeRouting& r, Tensor out) {
  if (!cuda::weight_type_supported(w.type))
    return fail(Error(fmt::format("cuda expert_matmul: no kernel for weight type {}", dtype_name(w.type))));
  const cuda::EMat m = emat(w);
  if (!exact_gemm_ && cuda::expert_int8_applies(m, cfmat(x))) {
    if (!reserve_scratch(cuda::expert_int8_scratch_bytes(cfmat(x), routing(r)))) return;
    return note("expert_matmul", cuda::expert_int8_gemv(stream_, m, nullptr, cfmat(x), false, routing(r),
                                                        fmat(out), scratch_));
  }
  note("expert_matmul", cuda::expert_gemv(stream_, m, nullptr, cfmat(x), false, routing(r), fmat(out)));
}

void CudaBackend::moe_combine(const Tensor& y, const MoeRouting& r, Tensor out) {
  note("moe_combine", cuda::moe_combine(stream_, cfmat(y), routing(r), fmat(out)));
}

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // "no driver" is not an error of later calls
    return 0;
  }
  return n;
}

Result<std::unique_ptr<Backend>> create_cuda_backend(int device, bool exact_gemm) {
  return CudaBackend::create(device, exact_gemm);
}

}  // namespace ferrum
