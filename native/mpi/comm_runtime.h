#pragma once
// The process's MPI runtime: one communication thread that initialises MPI, runs every
// collective in the order they were submitted (MPI requires every rank to issue them in
// the same order; one FIFO keeps the program's order), and finalises MPI. Only that thread
// calls MPI (MPI_THREAD_FUNNELED), so any MPI library works, and JavaScript threads never
// block on the network unless they ask to (the synchronous forms).
//
// A watchdog thread bounds every wait: a collective (or finalize) still running after the
// timeout means a rank has died, hung or skipped it; the watchdog prints which collective
// and aborts the whole job (MPI_Abort), so no rank hangs silently. A rank ended by the
// launcher (SIGTERM, when another rank failed) prints what it was waiting in.
//
// MPI is per process, so this is process-wide state; it holds no JavaScript values.
#include <mpi.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "collectives.h"

namespace fo::mpi {

struct InitInfo {
  int rank = 0;
  int world = 1;
  int thread_level = 0;
  std::string library;   // MPI_Get_library_version
  std::string version;   // MPI standard version, e.g. "3.1"
  std::string hostname;  // MPI_Get_processor_name
};

// A submitted collective: the call, the memory it must keep alive, and what to do once it
// has run (called on the communication thread with "" or the error).
struct Request {
  Collective call;
  std::string label;
  std::vector<std::shared_ptr<void>> keep_alive;
  std::function<void(const std::string& error)> done;
};

class CommRuntime {
 public:
  static CommRuntime& instance();

  // Starts the thread and MPI (once per process; later calls return the same info, or the
  // first call's error). timeout_seconds bounds every collective from then on.
  InitInfo init(double timeout_seconds);
  bool initialized() const { return state_.load() == State::Running; }
  bool finalized() const { return state_.load() == State::Finalized; }
  // The first error of a collective: every later one fails at once with it.
  std::string broken() const;

  // Queues a request (throws if MPI is not running). done() is always called exactly once.
  void submit(std::shared_ptr<Request> request);
  // Runs everything queued, then MPI_Finalize; blocks (bounded by the watchdog).
  void finalize();
  // Prints message and ends every rank of the job: MPI_Abort(MPI_COMM_WORLD, code).
  // Returns only when MPI is not running (nothing to abort).
  void abort(int code, const std::string& message);

  // rank, world size and library, once init() has succeeded.
  const InitInfo& info() const { return info_; }
  double timeout_seconds() const { return timeout_seconds_.load(); }
  void set_timeout_seconds(double seconds) { timeout_seconds_.store(seconds); }
  uint64_t completed() const { return completed_.load(); }
  size_t pending();
  const std::string& prefix() const { return prefix_; }

 private:
  enum class State : int { Idle, Starting, Running, Finalizing, Finalized, Failed };
  CommRuntime() = default;
  void thread_main();
  void watchdog_main();
  void run_request(Request& r);
  void set_current(const std::string& label);

  std::atomic<State> state_{State::Idle};
  mutable std::mutex mutex_;
  std::condition_variable wake_;       // the communication thread: work or finalize
  std::condition_variable init_done_;  // init(): MPI is up (or failed)
  std::condition_variable finalized_;  // finalize(): MPI is down
  std::deque<std::shared_ptr<Request>> queue_;
  bool finalize_requested_ = false;
  InitInfo info_;
  std::string init_error_;
  std::string broken_;
  std::string prefix_;  // "[fused-optim/distributed] rank R of N"
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::atomic<double> timeout_seconds_{300};
  std::atomic<int64_t> busy_since_ns_{0};  // 0: idle
  std::atomic<uint64_t> completed_{0};
  std::thread comm_thread_;
  std::thread watchdog_thread_;
};

}  // namespace fo::mpi
