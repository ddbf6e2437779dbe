#include "backend/cpu/thread_pool.h"

#include <immintrin.h>

#include <algorithm>

namespace ferrum::cpu {

namespace {

constexpr int kTaskBits = 20;
constexpr uint64_t kTaskMask = (uint64_t{1} << kTaskBits) - 1;
constexpr uint64_t kEpochMask = (uint64_t{1} << 24) - 1;
// Pause iterations before sleeping: some tens of microseconds, longer than the gap between two
// jobs of a step, much shorter than a scheduler time slice.
constexpr int kSpin = 4000;

uint64_t pack(uint64_t epoch, uint64_t n, uint64_t next) {
  return (epoch << (2 * kTaskBits)) | (n << kTaskBits) | next;
}
uint64_t epoch_of(uint64_t t) { return t >> (2 * kTaskBits); }
uint64_t count_of(uint64_t t) { return (t >> kTaskBits) & kTaskMask; }
uint64_t next_of(uint64_t t) { return t & kTaskMask; }

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  for (int t = 1; t < n_threads_; ++t) workers_.emplace_back([this, t] { worker(t); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  epoch_.fetch_add(1, std::memory_order_release);
  epoch_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::worker(int thread) {
  uint64_t seen = 0;
  while (true) {
    uint64_t e;
    int spins = 0;
    while ((e = epoch_.load(std::memory_order_acquire)) == seen) {
      if (++spins < kSpin)
        _mm_pause();
      else
        epoch_.wait(seen, std::memory_order_acquire);
    }
    if (stop_.load()) return;
    seen = e;
    work(e & kEpochMask, thread);
  }
}

void ThreadPool::work(uint64_t epoch, int thread) {
  uint64_t t = ticket_.load(std::memory_order_acquire);
  while (true) {
    if (epoch_of(t) != epoch || next_of(t) >= count_of(t)) return;
    if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire))
      continue;
    const auto n = static_cast<int64_t>(count_of(t));
    fn_.call(fn_.fn, task_base_ + static_cast<int64_t>(next_of(t)), thread);
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == n) done_.notify_one();
    t = ticket_.load(std::memory_order_acquire);
  }
}

void ThreadPool::run(int64_t n_tasks, TaskRef fn) {
  if (n_tasks <= 0) return;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (int64_t i = 0; i < n_tasks; ++i) fn.call(fn.fn, i, 0);
    return;
  }
  // Larger jobs run as consecutive jobs of at most kMaxTasks tasks.
  for (int64_t base = 0; base < n_tasks; base += kMaxTasks) {
    const int64_t n = std::min(kMaxTasks, n_tasks - base);
    const uint64_t e = epoch_.load(std::memory_order_relaxed) + 1;  // only this thread writes epoch_
    fn_ = fn;
    task_base_ = base;
    done_.store(0, std::memory_order_relaxed);
    // Publishing the ticket makes fn_ and done_ visible to any thread that claims a task of it.
    ticket_.store(pack(e & kEpochMask, static_cast<uint64_t>(n), 0), std::memory_order_release);
    epoch_.store(e, std::memory_order_release);
    epoch_.notify_all();
    work(e & kEpochMask, 0);
    int spins = 0;
    int64_t d;
    while ((d = done_.load(std::memory_order_acquire)) < n) {
      if (++spins < kSpin)
        _mm_pause();
      else
        done_.wait(d, std::memory_order_acquire);
    }
  }
}

}  // namespace ferrum::cpu
