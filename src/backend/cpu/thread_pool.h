// The CPU backend's threads: a persistent pool that runs "task i of n" jobs, with tasks claimed one
// at a time from a shared counter.
//
// Why not OpenMP: with static OpenMP partitions, every parallel region waits for its slowest thread.
// When another process takes one of the cores (a build, a browser, the benchmark client), a thread
// descheduled by the OS holds up every region until it runs again, and a decode step has hundreds
// of regions: 2 threads on a busy 2-core machine decoded at 1.8 tokens/s against 57 with one thread.
// Here a descheduled thread delays at most the one task it holds, the others take the rest, and a
// thread that arrives after all tasks are claimed simply skips the job. Waiting threads spin briefly
// (back-to-back jobs of one step start within microseconds) and then sleep in the kernel (C++20
// atomic wait), so an idle or crowded pool does not burn the CPU others need.
//
// Which task a thread runs changes nothing in the results: callers split work at boundaries that
// depend only on the sizes, and each task computes its outputs alone.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace ferrum::cpu {

class ThreadPool {
 public:
  // `n_threads` threads in all: the caller of parallel_for and n_threads - 1 workers.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(task, thread) for every task in [0, n_tasks) and returns when all have finished;
  // `thread` in [0, size()) identifies the running thread (for per-thread scratch). Not reentrant:
  // one caller at a time, and fn must not call parallel_for. fn is called through a plain pointer
  // (no std::function: a decode step starts hundreds of jobs and none may allocate).
  template <class F>
  void parallel_for(int64_t n_tasks, const F& fn) {
    run(n_tasks, {&fn, [](const void* f, int64_t i, int t) { (*static_cast<const F*>(f))(i, t); }});
  }

  // The largest n_tasks one call takes.
  static constexpr int64_t kMaxTasks = (int64_t{1} << 20) - 1;

 private:
  struct TaskRef {
    const void* fn;
    void (*call)(const void* fn, int64_t task, int thread);
  };
  void run(int64_t n_tasks, TaskRef fn);
  void worker(int thread);
  // Claims and runs tasks of job `epoch` until none is left (or the job is no longer current).
  void work(uint64_t epoch, int thread);

  int n_threads_;
  std::vector<std::thread> workers_;
  // The current job in one word: epoch (24 bits) | task count (20) | next unclaimed task (20). A
  // worker claims a task by a compare-and-swap on it, so a worker still holding an old epoch can
  // never claim a task of a newer job.
  std::atomic<uint64_t> ticket_{0};
  std::atomic<uint64_t> epoch_{0};  // jobs started (its low 24 bits are the job's epoch); workers sleep on it
  std::atomic<int64_t> done_{0};    // tasks of the current job finished
  TaskRef fn_{};                    // stable while the job has unclaimed tasks
  int64_t task_base_ = 0;  // task numbers of the current job start here (jobs over kMaxTasks are split)
  std::atomic<bool> stop_{false};
};

}  // namespace ferrum::cpu
