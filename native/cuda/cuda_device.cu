// Device discovery, memory and the small helpers of the CUDA backend.
//
// The binary links the static CUDA runtime, which loads the driver (libcuda.so) itself at the
// first call. Without a driver every runtime call returns an error instead of aborting, so
// this file can be loaded, and probe() answered, on any machine.
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <cstdio>
#include <cstring>
#include <string>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "element_access.cuh"

// The build passes the -gencode targets as a string, e.g. -DFO_CUDA_ARCHS="sm_75,sm_80".
// Stringizing (rather than using the macro as a literal) also accepts a bare token list such
// as sm_75;sm_80: nvcc splits an unquoted -D value at commas, so a build may need another
// separator.
#define FO_STR_(...) #__VA_ARGS__
#define FO_STR(...) FO_STR_(__VA_ARGS__)
#ifdef FO_CUDA_ARCHS
#define FO_CUDA_ARCHS_TEXT FO_STR(FO_CUDA_ARCHS)
#else
#define FO_CUDA_ARCHS_TEXT "unknown"
#endif

namespace fo::cuda {
namespace {

constexpr int kConvertThreads = 256;

template <DType D>
__global__ void __launch_bounds__(kConvertThreads)
    convert_kernel(float* __restrict__ dst, const storage_t<D>* __restrict__ src, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    dst[i] = to_float<D>(src[i]);
  }
}

// "sm_75,sm_80" from whatever quoting and separators the build used.
std::string compiled_archs() {
  std::string raw = FO_CUDA_ARCHS_TEXT, out;
  for (char c : raw) {
    if (c == '"' || c == '\\') continue;
    if (c == ';' || c == ' ' || c == ',') {
      if (!out.empty() && out.back() != ',') out += ',';
      continue;
    }
    out += c;
  }
  while (!out.empty() && out.back() == ',') out.pop_back();
  return out.empty() ? "unknown" : out;
}

// 13000 -> "13.0"
std::string cuda_version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

// "550.54.14" from the kernel module (Linux), or "" where it cannot be read.
std::string driver_release() {
  FILE* f = std::fopen("/proc/driver/nvidia/version", "r");
  if (!f) return "";
  char line[512] = {};
  const bool ok = std::fgets(line, sizeof line, f) != nullptr;
  std::fclose(f);
  if (!ok) return "";
  // "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024"
  const char* p = std::strstr(line, "Kernel Module");
  if (!p) return "";
  p += std::strlen("Kernel Module");
  while (*p == ' ') ++p;
  std::string v;
  while ((*p >= '0' && *p <= '9') || *p == '.') v += *p++;
  return v;
}

std::string arch_text(int major, int minor) { return "sm_" + std::to_string(major) + std::to_string(minor); }

// Explains a cudaGetDeviceCount failure.
std::string init_error(cudaError_t e, const Probe& p) {
  const std::string detail = " (" + error_text(e) + ")";
  switch (e) {
    case cudaErrorInsufficientDriver:
      // Without libcuda.so the runtime reports a driver version of 0.
      if (p.driver_version == 0) return "no NVIDIA driver found" + detail;
      {
        const std::string release = driver_release();
        return "NVIDIA driver too old: " + (release.empty() ? std::string("the driver") : "driver " + release) +
               " supports CUDA " + cuda_version_text(p.driver_version) + "; this build needs CUDA " +
               cuda_version_text(p.runtime_version) + " (driver R580 or newer)" + detail;
      }
    case cudaErrorNoDevice:
      return "no CUDA device found (none present, or hidden by CUDA_VISIBLE_DEVICES)" + detail;
    case cudaErrorSystemDriverMismatch:
      return "NVIDIA driver mismatch: the kernel module and libcuda.so versions differ" + detail;
    default:
      return "CUDA initialization failed" + detail;
  }
}

// Explains a failure to load our kernels on the device.
std::string kernel_error(cudaError_t e, const Probe& p, int device) {
  const std::string arch = arch_text(p.compute_major, p.compute_minor);
  const std::string detail =
      " (" + p.device_name + "; this binary has " + p.compiled_archs + "; " + error_text(e) + ")";
  switch (e) {
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidDeviceFunction:
      return "architecture " + arch + " not compiled into this binary" + detail;
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorInvalidPtx:
      return "architecture " + arch +
             " not compiled into this binary, and the driver cannot JIT-compile its PTX "
             "(update the NVIDIA driver)" +
             detail;
    default:
      return "cannot use CUDA device " + std::to_string(device) + detail;
  }
}

Probe run_probe() {
  Probe p;
  p.compiled = true;
  p.compiled_archs = compiled_archs();
  // Both work without a driver: the runtime's own version, and 0 for a missing driver.
  if (cudaRuntimeGetVersion(&p.runtime_version) != cudaSuccess) p.runtime_version = 0;
  if (cudaDriverGetVersion(&p.driver_version) != cudaSuccess) p.driver_version = 0;

  cudaError_t e = cudaGetDeviceCount(&p.device_count);
  if (e != cudaSuccess || p.device_count <= 0) {
    p.device_count = 0;
    p.error = init_error(e == cudaSuccess ? cudaErrorNoDevice : e, p);
    return p;
  }

  int device = 0;
  cudaDeviceProp prop{};
  e = cudaGetDevice(&device);
  if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, device);
  if (e != cudaSuccess) {
    p.error = "cannot query CUDA device " + std::to_string(device) + " (" + error_text(e) + ")";
    return p;
  }
  p.device_name = prop.name;
  p.compute_major = prop.major;
  p.compute_minor = prop.minor;

  // The device may be newer or older than every -gencode target: asking for a kernel's
  // attributes loads the module, which fails exactly when none of its images (nor its PTX,
  // through the driver's JIT) fits this device.
  cudaFuncAttributes attr{};
  e = cudaFuncGetAttributes(&attr, convert_kernel<DType::Float16>);
  if (e != cudaSuccess) {
    p.error = kernel_error(e, p, device);
    return p;
  }
  p.usable = true;
  return p;
}

}  // namespace

const Probe& probe() {
  static const Probe cached = [] {
    Probe p;
    try {
      p = run_probe();
    } catch (...) {  // only std::bad_alloc from the strings is possible
      p = Probe{};
      p.compiled = true;
      p.error = "CUDA probe failed";
    }
    // A failed call above left its error as the thread's last error; clear it so the first
    // unrelated launch check does not report it. Sticky errors are unaffected.
    (void)cudaGetLastError();
    return p;
  }();
  return cached;
}

// cudaMemcpy on the legacy default stream waits for earlier work of every blocking stream,
// optimizer launches included, so a copy always sees the latest update.
void copy_host_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy host to device");
}

void copy_device_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy device to host");
}

void zero(void* ptr, size_t bytes) {
  if (bytes == 0) return;
  // cudaMemset returns before the device has run it; the caller expects the memory zeroed.
  check(cudaMemset(ptr, 0, bytes), "cudaMemset");
  check(cudaStreamSynchronize(0), "cudaStreamSynchronize after cudaMemset");
}

void convert_to_float32(float* dst, const void* src, DType src_dtype, int64_t n) {
  if (n <= 0) return;
  // Enough blocks to fill any current GPU; the grid-stride loop covers the rest.
  const int64_t blocks = std::min<int64_t>((n + kConvertThreads - 1) / kConvertThreads, 65536);
  const dim3 grid(static_cast<unsigned>(blocks));
  (void)cudaGetLastError();  // a stale error from elsewhere must not be blamed on this launch
  switch (src_dtype) {
    case DType::Float32:
      FO_LAUNCH(convert_kernel<DType::Float32>, grid, kConvertThreads, 0, 0)(dst, static_cast<const float*>(src), n);
      break;
    case DType::Float16:
      FO_LAUNCH(convert_kernel<DType::Float16>, grid, kConvertThreads, 0, 0)(dst, static_cast<const uint16_t*>(src), n);
      break;
    case DType::BFloat16:
      FO_LAUNCH(convert_kernel<DType::BFloat16>, grid, kConvertThreads, 0, 0)
      (dst, static_cast<const uint16_t*>(src), n);
      break;
    default:
      throw std::runtime_error("convert_to_float32: unknown source dtype");
  }
  check(cudaGetLastError(), "convert_to_float32 launch");
  check(cudaStreamSynchronize(0), "convert_to_float32");
}

void* alloc_pinned(size_t bytes) {
  void* ptr = nullptr;
  check(cudaHostAlloc(&ptr, std::max<size_t>(bytes, 1), cudaHostAllocDefault), "cudaHostAlloc");
  return ptr;
}

void free_pinned(void* ptr) noexcept {
  if (ptr == nullptr) return;
  (void)cudaFreeHost(ptr);
  (void)cudaGetLastError();
}

struct CopyStream::Impl {
  cudaStream_t stream = nullptr;
  cudaEvent_t marks[2] = {nullptr, nullptr};

  ~Impl() {
    if (stream) (void)cudaStreamSynchronize(stream);
    for (cudaEvent_t e : marks)
      if (e) (void)cudaEventDestroy(e);
    if (stream) (void)cudaStreamDestroy(stream);
    (void)cudaGetLastError();
  }
};

CopyStream::CopyStream() {
  auto impl = std::make_unique<Impl>();  // frees what was created if a call below throws
  check(cudaStreamCreate(&impl->stream), "cudaStreamCreate (checkpoint staging)");
  for (cudaEvent_t& e : impl->marks)
    check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate (checkpoint staging)");
  // Blocking streams are not ordered with each other, only with the legacy default stream: a
  // point recorded there follows every launch queued so far on any of them (the optimizers'),
  // and this stream's copies start after it. (Recording alone would order a blocking stream;
  // the wait says so explicitly. test/cuda.checkpoint.test.ts fails without both.)
  check(cudaEventRecord(impl->marks[0], 0), "cudaEventRecord (checkpoint staging)");
  check(cudaStreamWaitEvent(impl->stream, impl->marks[0], 0), "cudaStreamWaitEvent (checkpoint staging)");
  impl_ = std::move(impl);
}

CopyStream::~CopyStream() = default;

void CopyStream::device_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, impl_->stream), "cudaMemcpyAsync device to host");
}

void CopyStream::host_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, impl_->stream), "cudaMemcpyAsync host to device");
}

void CopyStream::mark(int slot) { check(cudaEventRecord(impl_->marks[slot & 1], impl_->stream), "cudaEventRecord"); }

void CopyStream::wait(int slot) { check(cudaEventSynchronize(impl_->marks[slot & 1]), "cudaEventSynchronize"); }

void CopyStream::wait_all() {
  check(cudaStreamSynchronize(impl_->stream), "cudaStreamSynchronize (checkpoint staging)");
}

}  // namespace fo::cuda
