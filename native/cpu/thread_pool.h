#pragma once
// A persistent pool of worker threads. parallel_for hands out item indices from an atomic
// counter, so threads that finish early take more chunks; the calling thread works too.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fo::cpu {

class ThreadPool {
 public:
  // The process-wide pool: FUSED_OPTIM_THREADS threads if set, else one per hardware thread.
  static ThreadPool& instance();

  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return int(workers_.size()) + 1; }
  // Calls fn(i) for every i in [0, items) and returns when all calls have returned.
  // Calls from different threads are serialized.
  void parallel_for(int64_t items, const std::function<void(int64_t)>& fn);

 private:
  void worker_loop();
  void run_items();

  std::vector<std::thread> workers_;
  std::mutex call_mutex_;  // one parallel_for at a time
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t job_items_ = 0;
  uint64_t generation_ = 0;
  int busy_workers_ = 0;
  bool stopping_ = false;
  std::atomic<int64_t> next_item_{0};
};

}  // namespace fo::cpu
