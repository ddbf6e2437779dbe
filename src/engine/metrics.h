// Counters, gauges and latency histograms of the scheduler, read by the server's /metrics.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace ferrum {

// A cumulative histogram with fixed upper bounds (Prometheus semantics: bucket i counts
// observations <= bounds[i]; the +Inf bucket is `count`).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size(), 0) {}
  void observe(double v) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < bounds_.size(); ++i)
      if (v <= bounds_[i]) ++counts_[i];
    sum_ += v;
    ++count_;
  }
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {bounds_, counts_, sum_, count_};
  }

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct SchedulerMetrics {
  std::atomic<uint64_t> finished{0}, cancelled{0}, failed{0}, rejected{0}, preemptions{0};
  std::atomic<uint64_t> prompt_tokens{0}, generation_tokens{0}, steps{0};
  // Bounds as vLLM's vllm:time_to_first_token_seconds / vllm:inter_token_latency_seconds.
  Histogram ttft{{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                  20.0, 40.0, 80.0}};
  Histogram itl{{0.001, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
                 2.5, 5.0, 10.0}};
};

// A consistent view for /metrics.
struct SchedulerStats {
  uint64_t finished = 0, cancelled = 0, failed = 0, rejected = 0, preemptions = 0;
  uint64_t prompt_tokens = 0, generation_tokens = 0, steps = 0;
  int64_t queue_depth = 0, running = 0;
  int64_t kv_blocks_total = 0, kv_blocks_free = 0;
  int64_t kv_tokens_allocated = 0, kv_tokens_used = 0;  // waste = allocated - used
  Histogram::Snapshot ttft, itl;
};

}  // namespace ferrum
