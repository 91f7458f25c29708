#include "comm_runtime.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace fo::mpi {

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// What a rank ended by SIGTERM prints. Filled before the handler is installed; the label
// is rewritten by the communication thread before each collective (a torn read can only
// garble the message, never overrun: the last byte stays 0).
char g_prefix[128];
char g_current[256];
struct sigaction g_previous_term;

void write_all(const char* s) {
  size_t n = std::strlen(s);
  while (n > 0) {
    ssize_t w = ::write(2, s, n);
    if (w <= 0) return;
    s += w;
    n -= size_t(w);
  }
}

void on_sigterm(int sig) {
  write_all(g_prefix);
  write_all(": terminated by SIGTERM while ");
  if (g_current[0]) {
    write_all("waiting in ");
    write_all(g_current);
  } else {
    write_all("between collectives");
  }
  write_all(". When one rank fails, the MPI launcher ends the others: see its message for the rank that failed.\n");
  // Node's own handler (it restores the terminal) or the default action, then the signal.
  sigaction(sig, &g_previous_term, nullptr);
  raise(sig);
}

void install_term_handler(const std::string& prefix) {
  std::snprintf(g_prefix, sizeof g_prefix, "%s", prefix.c_str());
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigterm;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGTERM, &sa, &g_previous_term);
}

std::string library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  if (MPI_Get_library_version(text, &len) != MPI_SUCCESS) return "";
  std::string s(text, size_t(std::max(0, len)));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0' || s.back() == ' ')) s.pop_back();
  const size_t nl = s.find('\n');  // the first line names the library and its version
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace

CommRuntime& CommRuntime::instance() {
  static CommRuntime* runtime = new CommRuntime();  // never destroyed: its thread may outlive static teardown
  return *runtime;
}

InitInfo CommRuntime::init(double timeout_seconds) {
  std::unique_lock<std::mutex> lock(mutex_);
  switch (state_.load()) {
    case State::Running:
      timeout_seconds_.store(timeout_seconds);
      return info_;
    case State::Failed:
      throw std::runtime_error(init_error_);
    case State::Finalizing:
    case State::Finalized:
      throw std::runtime_error(
          "MPI was finalized in this process (destroy() was called); MPI cannot be initialised twice in one process");
    case State::Starting:
      break;
    case State::Idle:
      state_.store(State::Starting);
      timeout_seconds_.store(timeout_seconds);
      comm_thread_ = std::thread([this] { thread_main(); });
      comm_thread_.detach();
      break;
  }
  init_done_.wait(lock, [this] { return state_.load() != State::Starting; });
  if (state_.load() != State::Running) throw std::runtime_error(init_error_);
  return info_;
}

std::string CommRuntime::broken() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return broken_;
}

size_t CommRuntime::pending() {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size() + (busy_since_ns_.load() != 0 ? 1 : 0);
}

void CommRuntime::submit(std::shared_ptr<Request> request) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_.load() != State::Running || finalize_requested_)
      throw std::runtime_error(finalized() || finalize_requested_ ? "the process group has been destroyed"
                                                                  : "MPI is not initialised: call init() first");
    queue_.push_back(std::move(request));
  }
  wake_.notify_one();
}

void CommRuntime::finalize() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (state_.load() != State::Running) return;
  finalize_requested_ = true;
  wake_.notify_one();
  finalized_.wait(lock, [this] { return state_.load() == State::Finalized; });
}

void CommRuntime::abort(int code, const std::string& message) {
  if (state_.load() != State::Running && state_.load() != State::Finalizing) return;
  const std::string line = prefix_ + ": " + message + "\n";
  write_all(line.c_str());
  // From this thread although MPI runs FUNNELED on another: the job is ending, and every
  // MPI library lets MPI_Abort through (it only signals the launcher and exits).
  MPI_Abort(MPI_COMM_WORLD, code);
  _exit(code == 0 ? 1 : code);
}

void CommRuntime::set_current(const std::string& label) {
  const size_t n = std::min(label.size(), sizeof g_current - 1);
  std::memcpy(g_current, label.data(), n);
  g_current[n] = 0;
}

void CommRuntime::run_request(Request& r) {
  std::string error = broken();
  if (error.empty()) {
    set_current(r.label);
    busy_since_ns_.store(now_ns());
    error = run_collective(r.call, comm_, info_.rank, info_.world);
    busy_since_ns_.store(0);
    set_current("");
    if (!error.empty()) {
      error = r.label + ": " + error;
      std::lock_guard<std::mutex> lock(mutex_);
      broken_ = error;
    }
  } else {
    error = "the process group is unusable after an earlier error (" + error + ")";
  }
  completed_.fetch_add(1);
  r.done(error);
}

void CommRuntime::thread_main() {
  std::string error;
  int flag = 0;
  MPI_Initialized(&flag);
  if (flag) {
    error = "MPI was already initialised in this process by other code; fused-optim/distributed must initialise it";
  } else {
    int provided = 0;
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) {
      error = "MPI_Init_thread failed (error " + std::to_string(rc) + ")";
    } else {
      MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
      MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
      MPI_Comm_rank(comm_, &info_.rank);
      MPI_Comm_size(comm_, &info_.world);
      info_.thread_level = provided;
      info_.library = library_version();
      int major = 0, minor = 0;
      MPI_Get_version(&major, &minor);
      info_.version = std::to_string(major) + "." + std::to_string(minor);
      char host[MPI_MAX_PROCESSOR_NAME];
      int len = 0;
      if (MPI_Get_processor_name(host, &len) == MPI_SUCCESS) info_.hostname.assign(host, size_t(std::max(0, len)));
      prefix_ = "[fused-optim/distributed] rank " + std::to_string(info_.rank) + " of " + std::to_string(info_.world);
      install_term_handler(prefix_);
    }
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (error.empty()) {
      state_.store(State::Running);
    } else {
      init_error_ = error;
      state_.store(State::Failed);
    }
  }
  init_done_.notify_all();
  if (!error.empty()) return;
  watchdog_thread_ = std::thread([this] { watchdog_main(); });
  watchdog_thread_.detach();

  for (;;) {
    std::shared_ptr<Request> next;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return !queue_.empty() || finalize_requested_; });
      if (queue_.empty()) break;  // finalize requested and nothing left to run
      next = std::move(queue_.front());
      queue_.pop_front();
    }
    run_request(*next);
  }

  state_.store(State::Finalizing);
  set_current("finalize (MPI_Finalize waits for every rank to finalize)");
  busy_since_ns_.store(now_ns());
  MPI_Comm_free(&comm_);
  MPI_Finalize();
  busy_since_ns_.store(0);
  set_current("");
  {
    std::lock_guard<std::mutex> lock(mutex_);
    state_.store(State::Finalized);
  }
  finalized_.notify_all();
}

void CommRuntime::watchdog_main() {
  for (;;) {
    const double timeout = timeout_seconds_.load();
    const auto tick = std::chrono::milliseconds(std::clamp(int64_t(timeout * 1000 / 20), int64_t(10), int64_t(250)));
    std::this_thread::sleep_for(tick);
    const State s = state_.load();
    if (s == State::Finalized) return;
    const int64_t since = busy_since_ns_.load();
    if (since == 0) continue;
    const double waited = double(now_ns() - since) / 1e9;
    if (waited <= timeout) continue;
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.1f", waited);
    abort(1, std::string(g_current) + " has waited " + seconds +
                 " s (the timeout) for the other ranks: a rank has died, hung, or did not call it. Aborting the job.");
  }
}

}  // namespace fo::mpi
