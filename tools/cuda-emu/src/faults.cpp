// How the emulator reports what a GPU would do wrong: fatal errors (a message and abort, as
// a faulting kernel ends a CUDA context), the runtime's last-error state, injected
// failures for tests, and the SIGSEGV handler that names the allocation a stray access hit.
#include <signal.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "emu.h"

namespace cuda_emu {

void fatal(const std::string& message) {
  const std::string line = "cuda-emu: " + message + "\n";
  (void)!write(2, line.data(), line.size());
  std::abort();
}

void warn(const std::string& message) {
  const std::string line = "cuda-emu: warning: " + message + "\n";
  (void)!write(2, line.data(), line.size());
}

namespace {
thread_local cudaError_t last_error = cudaSuccess;

struct Injection {
  std::mutex mutex;
  struct Pending {
    int64_t skip;   // successful calls still to let through
    int64_t times;  // failures still to give after that
  };
  std::map<std::string, Pending> pending;  // by kind
};
Injection& injection() {
  static Injection* i = new Injection;  // never destroyed: used until the process ends
  return *i;
}
std::atomic<bool> any_injection{false};
}  // namespace

void set_last_error(cudaError_t e) {
  if (e != cudaSuccess) last_error = e;
}

cudaError_t take_last_error() {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}

cudaError_t peek_last_error() { return last_error; }

bool fail_after(const std::string& kind, int64_t skip, int64_t times) {
  if (kind != "malloc" && kind != "launch" && kind != "sync" && kind != "memcpy") return false;
  Injection& in = injection();
  std::lock_guard<std::mutex> lock(in.mutex);
  if (skip < 0 || times <= 0)
    in.pending.erase(kind);
  else
    in.pending[kind] = Injection::Pending{skip, times};
  any_injection.store(!in.pending.empty());
  return true;
}

bool injected_failure(const char* kind) {
  if (!any_injection.load()) return false;
  Injection& in = injection();
  std::lock_guard<std::mutex> lock(in.mutex);
  auto it = in.pending.find(kind);
  if (it == in.pending.end()) return false;
  if (it->second.skip > 0) {
    --it->second.skip;
    return false;
  }
  if (--it->second.times == 0) in.pending.erase(it);
  any_injection.store(!in.pending.empty());
  return true;
}

// ---------------------------------------------------------------------------------------
// SIGSEGV: device memory touched where it may not be. Only async-signal-safe calls below
// (snprintf into a stack buffer and write), then abort.

namespace {
struct sigaction previous_action;

void append(char* buf, size_t size, size_t& used, const char* fmt, ...) __attribute__((format(printf, 4, 5)));
void append(char* buf, size_t size, size_t& used, const char* fmt, ...) {
  if (used >= size) return;
  va_list ap;
  va_start(ap, fmt);
  const int n = vsnprintf(buf + used, size - used, fmt, ap);
  va_end(ap);
  if (n > 0) used += size_t(n);
}

void on_segv(int sig, siginfo_t* info, void* context) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  if (!in_arena(addr)) {
    // Not ours: hand it to whoever had the signal before, or to the default action.
    if (previous_action.sa_flags & SA_SIGINFO) {
      if (previous_action.sa_sigaction) return previous_action.sa_sigaction(sig, info, context);
    } else if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN) {
      return previous_action.sa_handler(sig);
    }
    signal(SIGSEGV, SIG_DFL);  // returning re-runs the access, which now ends the process
    return;
  }
  bool is_write = false;
#if defined(__x86_64__)
  is_write = (static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_ERR] & 2) != 0;
#endif
  char msg[1024];
  size_t used = 0;
  char who[256];
  const bool in_kernel = describe_current_thread(who, sizeof who);
  append(msg, sizeof msg, used, "cuda-emu: %s %s device memory at %p", in_kernel ? who : "host code (not a kernel)",
         is_write ? "wrote" : "read", info->si_addr);
  bool in_guard = false;
  const Allocation* a = find_any(addr, &in_guard);
  if (!a) {
    append(msg, sizeof msg, used, ", which no allocation holds (freed, or never allocated)");
  } else if (a->freed_pending) {
    append(msg, sizeof msg, used,
           ": allocation #%llu (%zu bytes at %p) was released by cudaFree while work queued before it could "
           "still use it; CUDA does not promise to wait for that work",
           (unsigned long long)a->id, a->bytes, reinterpret_cast<void*>(a->begin));
  } else if (in_guard || addr >= a->begin + a->bytes) {
    append(msg, sizeof msg, used, ": %llu bytes past the end of allocation #%llu (%zu bytes at %p)",
           (unsigned long long)(addr - (a->begin + a->bytes)), (unsigned long long)a->id, a->bytes,
           reinterpret_cast<void*>(a->begin));
  } else if (addr < a->begin) {
    append(msg, sizeof msg, used, ": %llu bytes before the start of allocation #%llu (%zu bytes at %p)",
           (unsigned long long)(a->begin - addr), (unsigned long long)a->id, a->bytes,
           reinterpret_cast<void*>(a->begin));
  } else {
    append(msg, sizeof msg, used, ": offset %llu of allocation #%llu (%zu bytes at %p)",
           (unsigned long long)(addr - a->begin), (unsigned long long)a->id, a->bytes,
           reinterpret_cast<void*>(a->begin));
  }
  if (!in_kernel) append(msg, sizeof msg, used, ". Host code cannot dereference device pointers: copy with cudaMemcpy");
  append(msg, sizeof msg, used, "\n");
  (void)!write(2, msg, used < sizeof msg ? used : sizeof msg - 1);
  signal(SIGABRT, SIG_DFL);
  abort();
}
}  // namespace

void install_fault_handler() {
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_sigaction = on_segv;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGSEGV, &action, &previous_action);
}

}  // namespace cuda_emu
