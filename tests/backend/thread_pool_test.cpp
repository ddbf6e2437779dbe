// The CPU backend's thread pool: every task runs exactly once per job, on a thread index in range,
// over many back-to-back jobs of varying size (the pattern of a decode step), with more tasks than
// one job word holds, and with fewer tasks than threads.
#include "backend/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace ferrum::cpu {
namespace {

void check_job(ThreadPool& pool, int64_t n) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::atomic<bool> bad_thread{false};
  pool.parallel_for(n, [&](int64_t i, int thread) {
    if (thread < 0 || thread >= pool.size()) bad_thread.store(true);
    hits[static_cast<size_t>(i)].fetch_add(1);
  });
  EXPECT_FALSE(bad_thread.load());
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "task " << i << " of " << n;
}

TEST(ThreadPool, EveryTaskRunsOnceAcrossManyJobs) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t job = 0; job < 2000; ++job) check_job(pool, 1 + (job * 7919) % 67);
  }
}

TEST(ThreadPool, JobsLargerThanOneTicket) {
  ThreadPool pool(3);
  check_job(pool, ThreadPool::kMaxTasks + 12345);
}

TEST(ThreadPool, EmptyAndSingleTaskJobs) {
  ThreadPool pool(4);
  int calls = 0;
  pool.parallel_for(0, [&](int64_t, int) { ++calls; });
  EXPECT_EQ(calls, 0);
  pool.parallel_for(1, [&](int64_t i, int thread) {
    EXPECT_EQ(i, 0);
    EXPECT_EQ(thread, 0);  // runs on the caller
    ++calls;
  });
  EXPECT_EQ(calls, 1);
}

// Workers that fall asleep between jobs (the pool idles longer than its spin) still pick up work.
TEST(ThreadPool, WakesSleepingWorkers) {
  ThreadPool pool(4);
  for (int round = 0; round < 5; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::atomic<int> distinct{0};
    std::vector<std::atomic<int>> seen(4);
    pool.parallel_for(400, [&](int64_t, int thread) {
      if (seen[static_cast<size_t>(thread)].fetch_add(1) == 0) distinct.fetch_add(1);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    });
    EXPECT_GT(distinct.load(), 1) << "round " << round;
  }
}

}  // namespace
}  // namespace ferrum::cpu
