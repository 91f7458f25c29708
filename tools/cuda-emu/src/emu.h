#pragma once
// The emulator's internal interfaces (not seen by native/cuda). One emulated device per
// process, shared by every thread and Node environment, as a GPU is.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "../include/cuda_emu/control.h"
#include "../include/cuda_emu/launch.h"

namespace cuda_emu {

// ---- configuration (config.cpp), from FO_CUDA_EMU="key=value,..." at first use
enum class ThreadMode { Fiber, Os };
enum class Order { Forward, Reverse, Random };
enum class Protect { Pkey, Mprotect, Off };
struct Config {
  ThreadMode threads = ThreadMode::Fiber;
  bool deferred = true;  // queued work runs at synchronisation points (false: at once)
  Order thread_order = Order::Forward;
  Order block_order = Order::Forward;
  uint64_t seed = 1;
  Protect protect = Protect::Pkey;  // falls back to Mprotect where pkeys are missing
  size_t memory_bytes = size_t(16) << 30;
  size_t param_limit = 32764;  // kernel parameter bytes (CUDA 12.1+, Volta and newer)
  int driver_version = 13000;
  int device_count = 1;
};
const Config& config();

// ---- errors (faults.cpp)
[[noreturn]] void fatal(const std::string& message);
void warn(const std::string& message);
void set_last_error(cudaError_t e);
cudaError_t take_last_error();
cudaError_t peek_last_error();
// Injected failures: true when this call of `kind` must fail.
bool injected_failure(const char* kind);
void install_fault_handler();

// ---- the device lock: one emulated device, its queues and memory, one thread at a time
std::recursive_mutex& device_mutex();
using DeviceLock = std::lock_guard<std::recursive_mutex>;

// ---- device memory (memory.cpp)
struct Allocation {
  uint64_t id;
  uintptr_t begin;  // the pointer cudaMalloc returned
  size_t bytes;
  uintptr_t pages_begin;  // its pages (the data), followed by one guard page
  size_t pages_bytes;
  bool freed_pending = false;  // cudaFree called while queued work was still outstanding
  uint64_t free_seq = 0;
};
void* device_malloc(size_t bytes);  // null when the arena is full
// Frees now, or (queued work outstanding) makes it inaccessible and frees it once the work
// queued before this call has run. False for a pointer cudaMalloc did not return.
bool device_free(void* ptr, uint64_t current_seq, bool work_outstanding);
void release_freed_upto(uint64_t executed_seq);  // all work with seq <= executed_seq has run
// The live allocation containing [p, p + n), or null.
const Allocation* find_live(uintptr_t p, size_t n);
// Any allocation (live or freed-pending) whose pages or guard page contain p; for messages.
const Allocation* find_any(uintptr_t p, bool* in_guard);
bool in_arena(uintptr_t p);
// The emulator's own always-accessible window onto device memory.
void* view_of(uintptr_t device_address);
void open_device_memory();        // this thread may touch device memory (kernels run); nests
void close_device_memory();       // back to faulting
void grant_this_thread(bool on);  // a thread-mode worker's own access (pkey mode)
Protect protection_in_use();      // the configured one, or mprotect where pkeys are missing
void check_canaries(const char* when);
void device_memory_counters(Counters& c);
size_t device_memory_total();
size_t device_memory_used();

// Pinned host memory (cudaMallocHost): ordinary host memory, remembered for
// cudaPointerGetAttributes.
void* pinned_alloc(size_t bytes);
bool pinned_free(void* p);
bool is_pinned(const void* p);

// ---- streams, events and the work queues (streams.cpp)
struct Stream;
struct Event;
Stream* resolve_stream(cudaStream_t s, bool* ok);  // 0 / cudaStreamLegacy: the legacy stream
// Queues `work` on the stream; runs it at once in eager mode. Returns its sequence number.
uint64_t enqueue(Stream* s, const char* what, std::function<void()> work);
void drain_stream(Stream* s, uint64_t upto_seq);
void drain_all();
Stream* create_stream(bool blocking);
void destroy_stream(Stream* s);
bool stream_idle(Stream* s);
Event* create_event(bool timing);
bool valid_event(Event* e);
void destroy_event(Event* e);
void record_event(Event* e, Stream* s);
void wait_event(Event* e);  // runs the work up to the event's record
bool event_done(Event* e);
bool event_timing(Event* e);
double event_elapsed_ms(Event* a, Event* b);
void stream_wait_event(Stream* s, Event* e);
uint64_t last_seq();
bool work_outstanding();
void count_host_sync();
Counters& mutable_counters();

// ---- kernel execution (executor.cpp)
struct KernelRun {
  std::shared_ptr<const KernelCall> call;
  dim3 grid, block;
  LaunchSite site;
  uint64_t launch_index;
};
void run_kernel(const KernelRun& run);
// Where the thread running on this host thread is, for fault messages (false: host code).
bool describe_current_thread(char* out, size_t size);

}  // namespace cuda_emu
