// Matmul kernel throughput on this machine:
//   * read bandwidth of a plain streaming sum (the ceiling for decode),
//   * decode (1 token) GB/s of weights streamed, with rows split over 1 and 2 OpenMP threads as the
//     CPU backend splits them,
//   * prefill (128 tokens unless told) GFLOP/s, activation quantization included.
// Weights are spread over enough copies (>= 512 MB) that every decode pass reads from DRAM.
//
//   bench_kernels [--types q4_K,q8_0,...] [--seconds S] [--prefill-tokens N] [--shapes RxK,...]
#include <omp.h>
#include <strings.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/matmul.h"

namespace {

using ferrum::DType;
using Clock = std::chrono::steady_clock;

struct Free {
  void operator()(void* p) const { std::free(p); }
};
using Buf = std::unique_ptr<uint8_t, Free>;
Buf alloc(size_t n) { return Buf(static_cast<uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64))); }

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Best time of repeated runs of f() within the time budget.
template <class F>
double best_time(double budget, F&& f) {
  double best = 1e30;
  const auto start = Clock::now();
  int n = 0;
  while (n < 3 || seconds_since(start) < budget) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, seconds_since(t0));
    ++n;
  }
  return best;
}

double read_bandwidth(int threads, double budget) {
  const size_t n = size_t{512} << 20;
  Buf buf = alloc(n);
  std::memset(buf.get(), 1, n);
  const auto* p = reinterpret_cast<const uint64_t*>(buf.get());
  volatile uint64_t sink = 0;
  const double t = best_time(budget, [&] {
    uint64_t total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total) schedule(static)
    for (size_t i = 0; i < n / 8; i += 8)
      total += p[i] + p[i + 1] + p[i + 2] + p[i + 3] + p[i + 4] + p[i + 5] + p[i + 6] + p[i + 7];
    sink = total;
  });
  (void)sink;
  return static_cast<double>(n) / t / 1e9;
}

void fill_weights(DType type, uint8_t* w, size_t bytes, std::mt19937& rng) {
  // Random codes with small finite scales: valid for every format, and speed does not depend on values.
  std::uniform_int_distribution<int> byte(0, 255);
  for (size_t i = 0; i < bytes; ++i) w[i] = static_cast<uint8_t>(byte(rng));
  const auto& tr = ferrum::traits(type);
  if (type == DType::F32) {
    for (size_t i = 0; i + 4 <= bytes; i += 4) {
      const float v = static_cast<float>(byte(rng) - 128) / 128.f;
      std::memcpy(w + i, &v, 4);
    }
  } else if (type == DType::F16 || type == DType::BF16) {
    for (size_t i = 0; i + 2 <= bytes; i += 2) {
      const float v = static_cast<float>(byte(rng) - 128) / 128.f;
      const uint16_t h = type == DType::F16 ? ferrum::fp32_to_fp16(v) : ferrum::fp32_to_bf16(v);
      std::memcpy(w + i, &h, 2);
    }
  } else {
    const uint16_t h = ferrum::fp32_to_fp16(0.01f);
    const int off = type == DType::Q6_K ? 208 : 0;
    for (size_t b = 0; b + static_cast<size_t>(tr.block_bytes) <= bytes;
         b += static_cast<size_t>(tr.block_bytes)) {
      std::memcpy(w + b + off, &h, 2);
      if (type == DType::Q4_1 || type == DType::Q4_K || type == DType::Q5_K) std::memcpy(w + b + 2, &h, 2);
    }
  }
}

struct Shape {
  int64_t rows, k;
};

void bench_type(DType type, const std::vector<Shape>& shapes, int64_t max_tokens, double budget, double bw2) {
  const ferrum::quant::MatmulKernel* kern = ferrum::quant::best_matmul_kernel(type);
  if (kern == nullptr) return;
  std::mt19937 rng(1);
  for (const Shape& s : shapes) {
    const size_t wrb = ferrum::row_bytes(type, s.k);
    const size_t mat_bytes = wrb * static_cast<size_t>(s.rows);
    const size_t copies = std::max<size_t>(1, (size_t{512} << 20) / mat_bytes);
    Buf w = alloc(mat_bytes * copies);
    fill_weights(type, w.get(), mat_bytes, rng);
    for (size_t c = 1; c < copies; ++c) std::memcpy(w.get() + c * mat_bytes, w.get(), mat_bytes);

    std::vector<float> x(static_cast<size_t>(max_tokens * s.k));
    std::normal_distribution<float> normal(0.f, 1.f);
    for (auto& v : x) v = normal(rng);
    const size_t arb =
        kern->quantize_act ? ferrum::quant::act_row_bytes(*kern, s.k) : static_cast<size_t>(s.k) * 4;
    Buf act = alloc(arb * max_tokens);
    std::vector<float> y(static_cast<size_t>(max_tokens * s.rows));

    auto matmul = [&](const uint8_t* wm, int64_t n_tokens, int threads) {
#pragma omp parallel num_threads(threads)
      {
        const int nt = omp_get_num_threads(), id = omp_get_thread_num();
        // Activations converted once (rows of tokens split over threads), then weight rows split.
#pragma omp for schedule(static)
        for (int64_t t = 0; t < n_tokens; ++t) {
          if (kern->quantize_act) {
            kern->quantize_act(&x[t * s.k], act.get() + t * arb, s.k);
          } else {
            std::memcpy(act.get() + t * arb, &x[t * s.k], arb);
          }
        }
        const int64_t per = (s.rows + nt - 1) / nt;
        const int64_t r0 = std::min<int64_t>(s.rows, per * id), r1 = std::min<int64_t>(s.rows, r0 + per);
        if (r1 > r0)
          kern->gemm(wm + r0 * wrb, wrb, act.get(), arb, s.k, n_tokens, y.data() + r0, s.rows, r1 - r0);
      }
    };

    for (int threads : {1, 2}) {
      size_t c = 0;
      // One decode step per call, cycling through the copies so the weights come from DRAM.
      const double td = best_time(budget,
                                  [&] {
                                    for (int rep = 0; rep < 4; ++rep) {
                                      matmul(w.get() + (c % copies) * mat_bytes, 1, threads);
                                      ++c;
                                    }
                                  }) /
                        4;
      const double gbs = static_cast<double>(mat_bytes) / td / 1e9;
      const double tp = best_time(budget, [&] { matmul(w.get(), max_tokens, threads); });
      const double gflops = 2.0 * static_cast<double>(s.rows * s.k * max_tokens) / tp / 1e9;
      std::printf("%-6s %5lld x %-5lld  %dT  decode %7.1f us %6.1f GB/s", ferrum::dtype_name(type),
                  static_cast<long long>(s.rows), static_cast<long long>(s.k), threads, td * 1e6, gbs);
      if (threads == 2) std::printf(" (%3.0f%% of read bw)", 100.0 * gbs / bw2);
      std::printf("   prefill-%lld %7.1f GFLOP/s   [%s]\n", static_cast<long long>(max_tokens), gflops,
                  kern->name);
      std::fflush(stdout);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<DType> types = {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q5_K, DType::Q4_0,
                              DType::Q4_1, DType::Q5_0, DType::F16,  DType::BF16, DType::F32};
  double budget = 0.5;
  int64_t prefill_tokens = 128;
  std::vector<Shape> shapes = {{2048, 2048}, {8192, 2048}, {2048, 8192}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) {
      budget = std::atof(argv[++i]);
    } else if (a == "--prefill-tokens" && i + 1 < argc) {
      prefill_tokens = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--shapes" && i + 1 < argc) {
      shapes.clear();
      for (const char* p = argv[++i]; *p != 0;) {
        char* end = nullptr;
        const int64_t r = std::strtoll(p, &end, 10);
        const int64_t k = *end == 'x' ? std::strtoll(end + 1, &end, 10) : 0;
        if (r <= 0 || k <= 0) break;
        shapes.push_back({r, k});
        p = *end == ',' ? end + 1 : end;
      }
    } else if (a == "--types" && i + 1 < argc) {
      types.clear();
      std::string list = argv[++i];
      size_t pos = 0;
      while (pos <= list.size()) {
        const size_t end = std::min(list.find(',', pos), list.size());
        const std::string name = list.substr(pos, end - pos);
        for (uint32_t id = 0; id <= 30; ++id) {
          const ferrum::DTypeTraits* t = ferrum::dtype_traits(id);
          if (t != nullptr && strcasecmp(t->name, name.c_str()) == 0) types.push_back(static_cast<DType>(id));
        }
        pos = end + 1;
      }
    } else {
      std::fprintf(stderr,
                   "usage: bench_kernels [--types q4_K,q8_0,...] [--seconds S] [--prefill-tokens N] "
                   "[--shapes RxK,...]\n");
      return 2;
    }
  }
  const double bw1 = read_bandwidth(1, budget), bw2 = read_bandwidth(2, budget);
  std::printf("read bandwidth: %.1f GB/s (1 thread), %.1f GB/s (2 threads)\n", bw1, bw2);
  for (DType t : types) bench_type(t, shapes, prefill_tokens, budget, bw2);
  return 0;
}
