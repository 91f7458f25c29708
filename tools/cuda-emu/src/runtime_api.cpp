// The CUDA runtime API over the emulated device: argument checks as CUDA makes them (and
// stricter where noted), then the work queued on its stream (streams.cpp). Every entry point
// takes the device lock, so any number of host threads may call it.
#include <chrono>
#include <cstring>
#include <string>

#include "../include/cuda.h"
#include "emu.h"

namespace cuda_emu {
namespace {

constexpr int kRuntimeVersion = 13000;

cudaError_t fail(cudaError_t e) {
  set_last_error(e);
  return e;
}

cudaError_t fail(cudaError_t e, const std::string& why) {
  warn(why);
  return fail(e);
}

bool device_count_error(cudaError_t* e) {
  const Config& c = config();
  if (c.driver_version < kRuntimeVersion) return *e = cudaErrorInsufficientDriver, true;
  if (c.device_count <= 0) return *e = cudaErrorNoDevice, true;
  return false;
}

std::string range_text(const void* p, size_t n) {
  char buf[96];
  snprintf(buf, sizeof buf, "[%p, +%zu bytes)", p, n);
  return buf;
}

// A device range must lie inside one live allocation; a host range must not touch the
// device arena (CUDA would accept some of these mixes through unified addressing; a wrong
// direction here is almost always a bug, so it is an error).
bool check_side(const void* p, size_t n, bool device, const char* fn, const char* side, std::string* why) {
  const uintptr_t u = reinterpret_cast<uintptr_t>(p);
  if (device) {
    if (find_live(u, n)) return true;
    *why = std::string(fn) + ": " + side + " " + range_text(p, n) + " is not inside a live cudaMalloc allocation";
    return false;
  }
  if (!in_arena(u) && !(n > 0 && in_arena(u + n - 1))) return true;
  *why = std::string(fn) + ": " + side + " " + range_text(p, n) + " is device memory, but the copy kind says host";
  return false;
}

bool resolve_kind(cudaMemcpyKind kind, const void* dst, const void* src, bool* dst_dev, bool* src_dev) {
  switch (kind) {
    case cudaMemcpyHostToHost:
      *dst_dev = false, *src_dev = false;
      return true;
    case cudaMemcpyHostToDevice:
      *dst_dev = true, *src_dev = false;
      return true;
    case cudaMemcpyDeviceToHost:
      *dst_dev = false, *src_dev = true;
      return true;
    case cudaMemcpyDeviceToDevice:
      *dst_dev = true, *src_dev = true;
      return true;
    case cudaMemcpyDefault:
      *dst_dev = in_arena(reinterpret_cast<uintptr_t>(dst));
      *src_dev = in_arena(reinterpret_cast<uintptr_t>(src));
      return true;
  }
  return false;
}

// The queued copy: re-checked when it runs (memory may have been freed meanwhile), then
// through the emulator's window for the device side.
std::function<void()> copy_work(void* dst, const void* src, size_t n, bool dst_dev, bool src_dev) {
  // Pinned host memory freed before the copy ran: CUDA does not promise to wait either.
  const bool dst_pinned = !dst_dev && is_pinned(dst);
  const bool src_pinned = !src_dev && is_pinned(src);
  return [=] {
    if ((dst_pinned && !is_pinned(dst)) || (src_pinned && !is_pinned(src)))
      fatal("a queued copy uses pinned host memory released by cudaFreeHost before the copy ran");
    std::string why;
    if (!check_side(dst, n, dst_dev, "queued copy", "destination", &why) ||
        !check_side(src, n, src_dev, "queued copy", "source", &why)) {
      fatal(why + " when the copy ran (freed by cudaFree after the copy was queued)");
    }
    void* d = dst_dev ? view_of(reinterpret_cast<uintptr_t>(dst)) : dst;
    const void* s = src_dev ? view_of(reinterpret_cast<uintptr_t>(src)) : src;
    if (n > 0) std::memmove(d, s, n);
    ++mutable_counters().copies;
  };
}

cudaError_t queue_copy(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t stream, const char* fn,
                       bool wait) {
  DeviceLock lock(device_mutex());
  bool ok = true;
  Stream* s = resolve_stream(stream, &ok);
  if (!ok) return fail(cudaErrorInvalidResourceHandle, std::string(fn) + ": unknown stream");
  if (injected_failure("memcpy")) return fail(cudaErrorInvalidValue);
  bool dst_dev = false, src_dev = false;
  if (!resolve_kind(kind, dst, src, &dst_dev, &src_dev)) return fail(cudaErrorInvalidMemcpyDirection);
  std::string why;
  if (n > 0 &&
      (!check_side(dst, n, dst_dev, fn, "destination", &why) || !check_side(src, n, src_dev, fn, "source", &why)))
    return fail(cudaErrorInvalidValue, why);
  const uint64_t seq = enqueue(s, fn, copy_work(dst, src, n, dst_dev, src_dev));
  if (wait) {
    count_host_sync();
    drain_stream(s, seq);
  }
  return cudaSuccess;
}

cudaError_t queue_memset(void* p, int value, size_t n, cudaStream_t stream, const char* fn) {
  DeviceLock lock(device_mutex());
  bool ok = true;
  Stream* s = resolve_stream(stream, &ok);
  if (!ok) return fail(cudaErrorInvalidResourceHandle, std::string(fn) + ": unknown stream");
  std::string why;
  if (n > 0 && !check_side(p, n, true, fn, "destination", &why)) return fail(cudaErrorInvalidValue, why);
  enqueue(s, fn, [=] {
    std::string late;
    if (!check_side(p, n, true, "queued cudaMemset", "destination", &late))
      fatal(late + " when the memset ran (freed by cudaFree after it was queued)");
    if (n > 0) std::memset(view_of(reinterpret_cast<uintptr_t>(p)), value, n);
    ++mutable_counters().memsets;
  });
  return cudaSuccess;
}

// A query of unfinished work does not run it (in deferred mode it would otherwise run
// early and hide a missing synchronization); only a loop that keeps polling with nothing
// else happening gets its work run, so it cannot spin forever.
uint64_t not_ready_polls = 0;
cudaError_t not_ready() {
  if (++not_ready_polls >= 1000000) {
    not_ready_polls = 0;
    drain_all();
  }
  return cudaErrorNotReady;
}

cudaError_t sync_stream(Stream* s) {
  count_host_sync();
  not_ready_polls = 0;
  if (injected_failure("sync")) return fail(cudaErrorLaunchFailure);
  drain_stream(s, UINT64_MAX);
  return cudaSuccess;
}

CUresult emu_cuMemGetAddressRange(CUdeviceptr* base, size_t* size, CUdeviceptr ptr) {
  DeviceLock lock(device_mutex());
  const Allocation* a = find_live(uintptr_t(ptr), 0);
  if (!a || uintptr_t(ptr) == a->begin + a->bytes) return CUDA_ERROR_NOT_FOUND;
  if (base) *base = CUdeviceptr(a->begin);
  if (size) *size = a->bytes;
  return CUDA_SUCCESS;
}

uint64_t next_launch_index = 0;

}  // namespace

void enqueue_launch(std::unique_ptr<KernelCall> call, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                    size_t param_bytes, const LaunchSite& site) {
  DeviceLock lock(device_mutex());
  const std::string where =
      std::string("launch of ") + site.kernel + " at " + site.file + ":" + std::to_string(site.line);
  if (injected_failure("launch")) return (void)fail(cudaErrorLaunchOutOfResources);
  bool ok = true;
  Stream* s = resolve_stream(stream, &ok);
  if (!ok) return (void)fail(cudaErrorInvalidResourceHandle, where + ": unknown stream");
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (grid.x < 1 || grid.x > 0x7fffffffu || grid.y < 1 || grid.y > 65535 || grid.z < 1 || grid.z > 65535 ||
      block.x < 1 || block.x > 1024 || block.y < 1 || block.y > 1024 || block.z < 1 || block.z > 64 || threads > 1024) {
    return (void)fail(cudaErrorInvalidConfiguration, where + ": invalid configuration grid (" + std::to_string(grid.x) +
                                                         "," + std::to_string(grid.y) + "," + std::to_string(grid.z) +
                                                         ") block (" + std::to_string(block.x) + "," +
                                                         std::to_string(block.y) + "," + std::to_string(block.z) + ")");
  }
  if (shared_bytes != 0) fatal(where + ": dynamic shared memory is not emulated");
  if (param_bytes > config().param_limit) {
    return (void)fail(cudaErrorInvalidConfiguration, where + ": " + std::to_string(param_bytes) +
                                                         " bytes of kernel parameters exceed the limit of " +
                                                         std::to_string(config().param_limit));
  }
  auto run = std::make_shared<KernelRun>();
  run->call = std::shared_ptr<const KernelCall>(std::move(call));
  run->grid = grid;
  run->block = block;
  run->site = site;
  run->launch_index = next_launch_index++;
  enqueue(s, "kernel", [run] { run_kernel(*run); });
}

}  // namespace cuda_emu

using namespace cuda_emu;

cudaError_t cudaGetLastError() { return take_last_error(); }
cudaError_t cudaPeekAtLastError() { return peek_last_error(); }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
#define FO_EMU_ERROR(name) \
  case name:               \
    return #name;
    FO_EMU_ERROR(cudaSuccess)
    FO_EMU_ERROR(cudaErrorInvalidValue)
    FO_EMU_ERROR(cudaErrorMemoryAllocation)
    FO_EMU_ERROR(cudaErrorInitializationError)
    FO_EMU_ERROR(cudaErrorInvalidConfiguration)
    FO_EMU_ERROR(cudaErrorInvalidSymbol)
    FO_EMU_ERROR(cudaErrorInvalidDevicePointer)
    FO_EMU_ERROR(cudaErrorInvalidMemcpyDirection)
    FO_EMU_ERROR(cudaErrorInsufficientDriver)
    FO_EMU_ERROR(cudaErrorInvalidDeviceFunction)
    FO_EMU_ERROR(cudaErrorNoDevice)
    FO_EMU_ERROR(cudaErrorInvalidDevice)
    FO_EMU_ERROR(cudaErrorNoKernelImageForDevice)
    FO_EMU_ERROR(cudaErrorInvalidPtx)
    FO_EMU_ERROR(cudaErrorUnsupportedPtxVersion)
    FO_EMU_ERROR(cudaErrorInvalidResourceHandle)
    FO_EMU_ERROR(cudaErrorSymbolNotFound)
    FO_EMU_ERROR(cudaErrorNotReady)
    FO_EMU_ERROR(cudaErrorIllegalAddress)
    FO_EMU_ERROR(cudaErrorLaunchOutOfResources)
    FO_EMU_ERROR(cudaErrorLaunchFailure)
    FO_EMU_ERROR(cudaErrorNotSupported)
    FO_EMU_ERROR(cudaErrorSystemDriverMismatch)
    FO_EMU_ERROR(cudaErrorUnknown)
#undef FO_EMU_ERROR
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInsufficientDriver:
      return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorLaunchOutOfResources:
      return "too many resources requested for launch";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorInvalidMemcpyDirection:
      return "invalid copy direction for memcpy";
    default:
      return "unknown error";
  }
}

cudaError_t cudaRuntimeGetVersion(int* v) {
  if (!v) return fail(cudaErrorInvalidValue);
  *v = 13000;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* v) {
  if (!v) return fail(cudaErrorInvalidValue);
  *v = config().driver_version;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return fail(cudaErrorInvalidValue);
  cudaError_t e;
  if (device_count_error(&e)) {
    *count = 0;
    return fail(e);
  }
  *count = config().device_count;
  return cudaSuccess;
}

namespace {
thread_local int current_device = 0;
}

cudaError_t cudaGetDevice(int* device) {
  if (!device) return fail(cudaErrorInvalidValue);
  cudaError_t e;
  if (device_count_error(&e)) return fail(e);
  *device = current_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  cudaError_t e;
  if (device_count_error(&e)) return fail(e);
  if (device < 0 || device >= config().device_count) return fail(cudaErrorInvalidDevice);
  current_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (!p) return fail(cudaErrorInvalidValue);
  cudaError_t e;
  if (device_count_error(&e)) return fail(e);
  if (device < 0 || device >= config().device_count) return fail(cudaErrorInvalidDevice);
  std::memset(p, 0, sizeof *p);
  std::strncpy(p->name, "CUDA host emulator (tools/cuda-emu; not a GPU)", sizeof p->name - 1);
  p->totalGlobalMem = device_memory_total();
  p->sharedMemPerBlock = 48 * 1024;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 0x7fffffff, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
  p->totalConstMem = 65536;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 1;
  p->memoryBusWidth = 64;
  p->l2CacheSize = 1 << 20;
  p->maxThreadsPerMultiProcessor = 2048;
  p->sharedMemPerBlockOptin = 48 * 1024;
  p->unifiedAddressing = 1;
  p->concurrentKernels = 0;
  p->asyncEngineCount = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  cudaDeviceProp p;
  const cudaError_t e = cudaGetDeviceProperties(&p, device);
  if (e != cudaSuccess) return e;
  if (!value) return fail(cudaErrorInvalidValue);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = p.maxThreadsPerBlock;
      break;
    case cudaDevAttrMaxBlockDimX:
      *value = p.maxThreadsDim[0];
      break;
    case cudaDevAttrMaxGridDimX:
      *value = p.maxGridSize[0];
      break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = int(p.sharedMemPerBlock);
      break;
    case cudaDevAttrWarpSize:
      *value = p.warpSize;
      break;
    case cudaDevAttrMultiProcessorCount:
      *value = p.multiProcessorCount;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *value = p.major;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = p.minor;
      break;
    default:
      return fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  DeviceLock lock(device_mutex());
  count_host_sync();
  if (injected_failure("sync")) return fail(cudaErrorLaunchFailure);
  drain_all();
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  DeviceLock lock(device_mutex());
  if (!free_bytes || !total_bytes) return fail(cudaErrorInvalidValue);
  *total_bytes = device_memory_total();
  *free_bytes = *total_bytes - device_memory_used();
  return cudaSuccess;
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  if (!attr || !func) return fail(cudaErrorInvalidDeviceFunction);
  cudaError_t e;
  if (device_count_error(&e)) return fail(e);
  std::memset(attr, 0, sizeof *attr);
  attr->maxThreadsPerBlock = 1024;
  attr->ptxVersion = 90;
  attr->binaryVersion = 90;
  return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attr, const void* ptr) {
  if (!attr) return fail(cudaErrorInvalidValue);
  cudaError_t e;
  if (device_count_error(&e)) return fail(e);
  DeviceLock lock(device_mutex());
  std::memset(attr, 0, sizeof *attr);
  const uintptr_t u = reinterpret_cast<uintptr_t>(ptr);
  if (const Allocation* a = find_live(u, 0); a && u < a->begin + a->bytes) {
    attr->type = cudaMemoryTypeDevice;
    attr->device = 0;
    attr->devicePointer = const_cast<void*>(ptr);
  } else if (is_pinned(ptr)) {
    attr->type = cudaMemoryTypeHost;
    attr->hostPointer = const_cast<void*>(ptr);
    attr->devicePointer = const_cast<void*>(ptr);
  } else {
    attr->type = cudaMemoryTypeUnregistered;
    attr->device = -2;
  }
  return cudaSuccess;
}

cudaError_t cudaGetDriverEntryPointByVersion(const char* symbol, void** func, unsigned int, unsigned long long,
                                             cudaDriverEntryPointQueryResult* status) {
  if (!symbol || !func) return fail(cudaErrorInvalidValue);
  if (std::strcmp(symbol, "cuMemGetAddressRange") == 0) {
    *func = reinterpret_cast<void*>(&emu_cuMemGetAddressRange);
    if (status) *status = cudaDriverEntryPointSuccess;
  } else {
    *func = nullptr;
    if (status) *status = cudaDriverEntryPointSymbolNotFound;
  }
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (!ptr) return fail(cudaErrorInvalidValue);
  DeviceLock lock(device_mutex());
  *ptr = nullptr;
  if (injected_failure("malloc")) return fail(cudaErrorMemoryAllocation);
  if (bytes == 0) return cudaSuccess;  // as CUDA: success and a null pointer
  void* p = device_malloc(bytes);
  if (!p) return fail(cudaErrorMemoryAllocation);
  *ptr = p;
  ++mutable_counters().mallocs;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (!ptr) return cudaSuccess;
  DeviceLock lock(device_mutex());
  if (!device_free(ptr, last_seq(), work_outstanding()))
    return fail(cudaErrorInvalidValue,
                "cudaFree(" + range_text(ptr, 0) + "): not a pointer cudaMalloc returned, or freed twice");
  ++mutable_counters().frees;
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) { return cudaHostAlloc(ptr, bytes, cudaHostAllocDefault); }

cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int) {
  if (!ptr) return fail(cudaErrorInvalidValue);
  DeviceLock lock(device_mutex());
  *ptr = nullptr;
  if (injected_failure("malloc")) return fail(cudaErrorMemoryAllocation);
  void* p = pinned_alloc(bytes);
  if (!p) return fail(cudaErrorMemoryAllocation);
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) {
  if (!ptr) return cudaSuccess;
  DeviceLock lock(device_mutex());
  // A queued copy that still reads or writes it is reported when it runs (copy_work).
  if (!pinned_free(ptr)) return fail(cudaErrorInvalidValue, "cudaFreeHost: not a pointer cudaMallocHost returned");
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return queue_copy(dst, src, bytes, kind, nullptr, "cudaMemcpy", true);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  return queue_copy(dst, src, bytes, kind, stream, "cudaMemcpyAsync", false);
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  return queue_memset(ptr, value, bytes, nullptr, "cudaMemset");
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  return queue_memset(ptr, value, bytes, stream, "cudaMemsetAsync");
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (!stream || (flags & ~cudaStreamNonBlocking)) return fail(cudaErrorInvalidValue);
  DeviceLock lock(device_mutex());
  cudaError_t e;
  if (device_count_error(&e)) return fail(e);
  *stream = reinterpret_cast<cudaStream_t>(create_stream((flags & cudaStreamNonBlocking) == 0));
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  DeviceLock lock(device_mutex());
  bool ok = true;
  Stream* s = resolve_stream(stream, &ok);
  if (!ok || stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread)
    return fail(cudaErrorInvalidResourceHandle);
  destroy_stream(s);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  DeviceLock lock(device_mutex());
  bool ok = true;
  Stream* s = resolve_stream(stream, &ok);
  if (!ok) return fail(cudaErrorInvalidResourceHandle);
  return sync_stream(s);
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  DeviceLock lock(device_mutex());
  bool ok = true;
  Stream* s = resolve_stream(stream, &ok);
  if (!ok) return fail(cudaErrorInvalidResourceHandle);
  if (stream_idle(s)) return cudaSuccess;
  return not_ready();
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  DeviceLock lock(device_mutex());
  bool ok = true;
  Stream* s = resolve_stream(stream, &ok);
  Event* e = reinterpret_cast<Event*>(event);
  if (!ok || !valid_event(e) || flags != 0) return fail(cudaErrorInvalidResourceHandle);
  stream_wait_event(s, e);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (!event || (flags & ~(cudaEventBlockingSync | cudaEventDisableTiming))) return fail(cudaErrorInvalidValue);
  DeviceLock lock(device_mutex());
  *event = reinterpret_cast<cudaEvent_t>(create_event((flags & cudaEventDisableTiming) == 0));
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  DeviceLock lock(device_mutex());
  Event* e = reinterpret_cast<Event*>(event);
  if (!valid_event(e)) return fail(cudaErrorInvalidResourceHandle);
  destroy_event(e);
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  DeviceLock lock(device_mutex());
  bool ok = true;
  Stream* s = resolve_stream(stream, &ok);
  Event* e = reinterpret_cast<Event*>(event);
  if (!ok || !valid_event(e)) return fail(cudaErrorInvalidResourceHandle);
  record_event(e, s);
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  DeviceLock lock(device_mutex());
  Event* e = reinterpret_cast<Event*>(event);
  if (!valid_event(e)) return fail(cudaErrorInvalidResourceHandle);
  count_host_sync();
  if (injected_failure("sync")) return fail(cudaErrorLaunchFailure);
  wait_event(e);
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  DeviceLock lock(device_mutex());
  Event* e = reinterpret_cast<Event*>(event);
  if (!valid_event(e)) return fail(cudaErrorInvalidResourceHandle);
  if (event_done(e)) return cudaSuccess;
  return not_ready();
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  DeviceLock lock(device_mutex());
  Event* a = reinterpret_cast<Event*>(start);
  Event* b = reinterpret_cast<Event*>(end);
  if (!ms || !valid_event(a) || !valid_event(b)) return fail(cudaErrorInvalidResourceHandle);
  if (!event_timing(a) || !event_timing(b)) return fail(cudaErrorInvalidResourceHandle);
  if (!event_done(a) || !event_done(b)) return fail(cudaErrorNotReady);
  *ms = float(event_elapsed_ms(a, b));
  return cudaSuccess;
}
