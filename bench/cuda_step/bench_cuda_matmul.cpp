// GPU time of the weight products of one decode step of a real-shaped model, through the CUDA backend's
// matmul / matmul_group exactly as the models call them (q/k/v and gate/up grouped), recorded as one
// CUDA graph per matrix class and replayed. Every layer has its own weights, so a step streams the
// whole model from HBM as a real one does (nothing stays in L2). What the table leaves out of ferrum
// bench's step time is the rest of the step: norms, RoPE, attention, KV writes, launches between them.
//
//   bench_cuda_matmul [--shape llama-3.1-8b|qwen3-0.6b] [--type Q4_K_M|Q5_K_M|Q8_0|Q6_K|Q4_0|BF16|F16]
//                     [--tokens 1,8,32,64] [--reps 20] [--hbm-tbs 4.8] [--exact-gemm 0|1]
//
// --exact-gemm 1 measures the float32-accurate kernels (ferrum --exact-gemm); the default, the kernels
// ferrum runs by default.
//
// Weights: 16 distinct random rows per matrix shape (quantized by ferrum's quantizer), repeated; every
// tensor gets the type `ferrum quantize` gives it for that file type (choose_tensor_type).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "models/gguf_export.h"
#include "quant/quantize.h"

namespace {

using namespace ferrum;

struct Shape {
  int64_t hidden, q_dim, kv_dim, ffn, vocab, layers;
};

const std::map<std::string, Shape> kShapes = {
    {"llama-3.1-8b", {4096, 4096, 1024, 14336, 128256, 32}},
    {"qwen3-0.6b", {1024, 2048, 1024, 3072, 151936, 28}},
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_cuda_matmul: %s\n", what.c_str());
  std::exit(1);
}

template <class T>
T value_or_die(Result<T> r, const char* what) {
  if (!r.ok()) die(std::string(what) + ": " + r.status().message());
  return std::move(r).value();
}

// Host copies of one matrix shape per type, made once: 16 random rows repeated.
class HostWeights {
 public:
  const std::vector<uint8_t>& get(DType type, int64_t rows, int64_t cols) {
    auto& buf = cache_[{static_cast<int>(type), rows, cols}];
    if (!buf.empty()) return buf;
    const size_t rb = row_bytes(type, cols);
    std::vector<uint8_t> distinct(rb * 16);
    std::normal_distribution<float> d(0.0f, 0.02f);
    std::vector<float> f(static_cast<size_t>(cols));
    for (int r = 0; r < 16; ++r) {
      for (float& v : f) v = d(rng_);
      quant::quantize_row(type, f.data(), distinct.data() + rb * static_cast<size_t>(r), cols);
    }
    buf.resize(rb * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(buf.data() + rb * static_cast<size_t>(r),
                  distinct.data() + rb * static_cast<size_t>(r % 16), rb);
    return buf;
  }

 private:
  std::map<std::tuple<int, int64_t, int64_t>, std::vector<uint8_t>> cache_;
  std::mt19937 rng_{7};
};

struct Layer {
  Tensor q, k, v, o, gate, up, down;
};

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string shape_name = "llama-3.1-8b", type_name = "Q4_K_M";
  std::vector<int64_t> token_counts = {1, 8, 32, 64};
  int reps = 20;
  double hbm_tbs = 4.8;
  bool exact_gemm = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--shape")
      shape_name = v;
    else if (a == "--type")
      type_name = v;
    else if (a == "--tokens")
      token_counts = parse_list(v);
    else if (a == "--reps")
      reps = std::stoi(v);
    else if (a == "--hbm-tbs")
      hbm_tbs = std::stod(v);
    else if (a == "--exact-gemm")
      exact_gemm = v == "1";
    else
      die("unknown option " + a);
  }
  if (!kShapes.count(shape_name)) die("unknown shape " + shape_name);
  const Shape s = kShapes.at(shape_name);
  const FileType file_type = value_or_die(parse_file_type(type_name), "--type");
  const TensorTypeContext type_ctx{.n_layers = s.layers};

  auto be = value_or_die(create_backend("cuda", BackendOptions{.threads = 0, .exact_gemm = exact_gemm}),
                         "cuda backend");
  HostWeights host;
  size_t total_bytes = 0;
  std::map<std::string, size_t> class_bytes;
  // Tensor `name` ([rows, cols]) in the type ferrum quantize gives it.
  auto upload = [&](const char* cls, const std::string& name, int64_t rows, int64_t cols) {
    const DType t = choose_tensor_type(file_type, name, {cols, rows}, type_ctx);
    const auto& h = host.get(t, rows, cols);
    Tensor w = value_or_die(
        be->upload_weight(Tensor::matrix_view(t, const_cast<uint8_t*>(h.data()), rows, cols)), "upload");
    total_bytes += h.size();
    class_bytes[cls] += h.size();
    return w;
  };
  std::vector<Layer> layers;
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string blk = "blk." + std::to_string(l) + ".";
    layers.push_back({upload("qkv", blk + "attn_q.weight", s.q_dim, s.hidden),
                      upload("qkv", blk + "attn_k.weight", s.kv_dim, s.hidden),
                      upload("qkv", blk + "attn_v.weight", s.kv_dim, s.hidden),
                      upload("o", blk + "attn_output.weight", s.hidden, s.q_dim),
                      upload("gate_up", blk + "ffn_gate.weight", s.ffn, s.hidden),
                      upload("gate_up", blk + "ffn_up.weight", s.ffn, s.hidden),
                      upload("down", blk + "ffn_down.weight", s.hidden, s.ffn)});
  }
  const Tensor output = upload("output", "output.weight", s.vocab, s.hidden);
  std::printf("%s %s: %.2f GB of weight products a step (%d layers + output)\n", shape_name.c_str(),
              type_name.c_str(), total_bytes / 1e9, static_cast<int>(s.layers));
  std::printf("| tokens | class | GB | µs a step | TB/s | HBM %% |\n|---|---|---|---|---|---|\n");

  const int64_t max_tokens = *std::max_element(token_counts.begin(), token_counts.end());
  const int64_t widest = std::max({s.hidden, s.q_dim, s.ffn, s.vocab});
  std::vector<void*> owned;
  auto buffer = [&](int64_t rows, int64_t cols) {
    void* p = value_or_die(be->alloc(static_cast<size_t>(rows * cols) * sizeof(float)), "alloc");
    owned.push_back(p);
    std::vector<float> init(static_cast<size_t>(rows * cols));
    std::mt19937 rng(3);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (float& v : init) v = d(rng);
    be->copy_to_device(p, init.data(), init.size() * sizeof(float));
    return static_cast<float*>(p);
  };
  float* x_mem = buffer(max_tokens, widest);
  float* y_mem[3] = {buffer(max_tokens, widest), buffer(max_tokens, widest), buffer(max_tokens, widest)};

  for (int64_t n : token_counts) {
    const Tensor xh = Tensor::f32(x_mem, n, s.hidden), xq = Tensor::f32(x_mem, n, s.q_dim),
                 xf = Tensor::f32(x_mem, n, s.ffn);
    auto out = [&](int i, int64_t cols) { return Tensor::f32(y_mem[i], n, cols); };
    struct Class {
      const char* name;
      std::function<void()> run;
    };
    const std::vector<Class> classes = {
        {"qkv",
         [&] {
           for (const Layer& L : layers) {
             const MatmulOut g[] = {
                 {&L.q, out(0, s.q_dim)}, {&L.k, out(1, s.kv_dim)}, {&L.v, out(2, s.kv_dim)}};
             be->matmul_group(xh, g);
           }
         }},
        {"o",
         [&] {
           for (const Layer& L : layers) be->matmul(xq, L.o, out(0, s.hidden));
         }},
        {"gate_up",
         [&] {
           for (const Layer& L : layers) {
             const MatmulOut g[] = {{&L.gate, out(0, s.ffn)}, {&L.up, out(1, s.ffn)}};
             be->matmul_group(xh, g);
           }
         }},
        {"down",
         [&] {
           for (const Layer& L : layers) be->matmul(xf, L.down, out(0, s.hidden));
         }},
        {"output", [&] { be->matmul(xh, output, out(0, s.vocab)); }},
    };
    double step_us = 0.0;
    for (const Class& c : classes) {
      c.run();  // first run: scratch buffers are made outside the recording
      be->sync();
      be->record_begin();
      c.run();
      auto graph = value_or_die(be->record_end(), "record");
      be->replay(*graph);
      be->sync();
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) be->replay(*graph);
      be->sync();
      const double us =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
      if (Status st = be->check(); !st.ok()) die(st.message());
      step_us += us;
      const double gb = class_bytes[c.name] / 1e9, tbs = gb / us * 1e3;
      std::printf("| %lld | %s | %.3f | %.1f | %.2f | %.0f |\n", static_cast<long long>(n), c.name, gb, us,
                  tbs, 100.0 * tbs / hbm_tbs);
    }
    const double tbs = total_bytes / 1e9 / step_us * 1e3;
    std::printf("| %lld | all | %.3f | %.1f | %.2f | %.0f |\n", static_cast<long long>(n), total_bytes / 1e9,
                step_us, tbs, 100.0 * tbs / hbm_tbs);
  }
  for (void* p : owned) be->free(p);
  return 0;
}
