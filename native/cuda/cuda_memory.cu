// Device memory of the CUDA backend: allocation, release ordered after the work that may
// still use the memory, and the driver's view of an allocation's extent.
//
// NOTE(stream-ordered release). A synchronous step() only queues kernels, and CUDA does not
// promise that cudaFree waits for queued work, so freeing a tensor's memory (dispose, a grad
// replaced and collected, a launcher's buffer grown) while a step is queued could let the
// kernels read or write memory that is already someone else's. Every launcher registers its
// stream here; a release when any of them still has work queued records an event on each
// busy stream and frees the memory once those events have completed (checked whenever the
// backend allocates, releases or launches, and at once when an allocation runs short). Host
// code never waits for it.
#include <cuda.h>  // the driver API types only: no libcuda link
#include <cuda_runtime.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_backend.h"
#include "cuda_check.h"

namespace fo::cuda {
namespace {

class ReleaseQueue {
 public:
  void add_stream(cudaStream_t s) {
    std::lock_guard<std::mutex> lock(mutex_);
    streams_.push_back(s);
  }

  void remove_stream(cudaStream_t s) {
    std::lock_guard<std::mutex> lock(mutex_);
    streams_.erase(std::remove(streams_.begin(), streams_.end(), s), streams_.end());
  }

  void release(void* ptr) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    poll_locked();
    Pending p{ptr, {}};
    for (cudaStream_t s : streams_) {
      if (cudaStreamQuery(s) != cudaErrorNotReady) continue;
      cudaEvent_t e = take_event();
      if (!e || cudaEventRecord(e, s) != cudaSuccess) {
        // Cannot order the free after the stream: wait for it instead (an error path).
        if (e) spare_.push_back(e);
        (void)cudaStreamSynchronize(s);
        continue;
      }
      p.events.push_back(e);
    }
    (void)cudaGetLastError();
    if (p.events.empty())
      free_now(ptr);
    else
      pending_.push_back(std::move(p));
  }

  void poll() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    poll_locked();
  }

  // Waits for every pending release and frees it (an allocation ran short).
  void drain() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    for (Pending& p : pending_) {
      for (cudaEvent_t e : p.events) {
        (void)cudaEventSynchronize(e);
        spare_.push_back(e);
      }
      free_now(p.ptr);
    }
    pending_.clear();
    (void)cudaGetLastError();
  }

 private:
  struct Pending {
    void* ptr;
    std::vector<cudaEvent_t> events;
  };

  static void free_now(void* ptr) noexcept {
    // Fails only in teardown (runtime already unloaded) or after a sticky error; either way
    // the memory is gone with the context.
    (void)cudaFree(ptr);
    (void)cudaGetLastError();
  }

  cudaEvent_t take_event() noexcept {
    if (!spare_.empty()) {
      cudaEvent_t e = spare_.back();
      spare_.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) return nullptr;
    return e;
  }

  void poll_locked() noexcept {
    auto done = [&](Pending& p) {
      for (cudaEvent_t e : p.events)
        if (cudaEventQuery(e) != cudaSuccess) return false;
      for (cudaEvent_t e : p.events) spare_.push_back(e);
      free_now(p.ptr);
      return true;
    };
    pending_.erase(std::remove_if(pending_.begin(), pending_.end(), done), pending_.end());
    (void)cudaGetLastError();
  }

  std::mutex mutex_;
  std::vector<cudaStream_t> streams_;
  std::vector<Pending> pending_;
  std::vector<cudaEvent_t> spare_;
};

ReleaseQueue& release_queue() {
  static ReleaseQueue* q = new ReleaseQueue;  // never destroyed: frees can come from static teardown
  return *q;
}

// cuMemGetAddressRange through the runtime's driver entry point (no libcuda link).
using AddressRangeFn = CUresult (*)(CUdeviceptr* base, size_t* size, CUdeviceptr ptr);

AddressRangeFn address_range_fn() {
  static const AddressRangeFn fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult status{};
    if (cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", &f, 12000, cudaEnableDefault, &status) !=
            cudaSuccess ||
        status != cudaDriverEntryPointSuccess)
      f = nullptr;
    (void)cudaGetLastError();
    return reinterpret_cast<AddressRangeFn>(f);
  }();
  return fn;
}

}  // namespace

void register_stream(cudaStream_t stream) { release_queue().add_stream(stream); }
void unregister_stream(cudaStream_t stream) { release_queue().remove_stream(stream); }
void poll_releases() noexcept { release_queue().poll(); }

void* device_alloc(size_t bytes) {
  // A unique non-null pointer even for empty tensors, as malloc gives.
  const size_t n = std::max<size_t>(bytes, 1);
  release_queue().poll();
  void* ptr = nullptr;
  cudaError_t e = cudaMalloc(&ptr, n);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    release_queue().drain();  // memory whose release waits on queued work
    e = cudaMalloc(&ptr, n);
  }
  check(e, "cudaMalloc");
  return ptr;
}

void device_free(void* ptr) noexcept {
  if (ptr == nullptr) return;
  release_queue().release(ptr);
}

DeviceAllocation device_allocation(const void* ptr) {
  DeviceAllocation a;
  if (ptr == nullptr) return a;
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
    (void)cudaGetLastError();  // e.g. no driver: not a device pointer, and not an error to keep
    return a;
  }
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return a;
  }
  const bool ours = attr.type == cudaMemoryTypeManaged || (attr.type == cudaMemoryTypeDevice && attr.device == device);
  if (!ours) return a;
  a.device_memory = true;
  const AddressRangeFn range = address_range_fn();
  CUdeviceptr base = 0;
  size_t size = 0;
  if (range && range(&base, &size, CUdeviceptr(reinterpret_cast<uintptr_t>(ptr))) == CUDA_SUCCESS) {
    a.extent_known = true;
    a.base = uintptr_t(base);
    a.size = size;
  }
  return a;
}

}  // namespace fo::cuda
