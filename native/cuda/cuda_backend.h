#pragma once
// The CUDA backend as seen from plain C++ (native/core): no CUDA or N-API types cross this
// line. Implemented by cuda_device.cu, cuda_memory.cu and one .cu file per algorithm (over
// multi_tensor.cuh) when nvcc is available, and by cuda_stub.cpp and launcher_stub.h (every
// call reports "not compiled") when it is not. Errors are thrown as std::runtime_error with
// the CUDA error name and a message.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>
#include "../common/adamw_plan.h"
#include "../common/backend.h"
#include "../common/adamw_rule.h"
#include "../common/dtype.h"
#include "../common/grad_transform.h"
#include "../common/lion_plan.h"
#include "../common/lion_rule.h"
#include "../common/metrics.h"

namespace fo::cuda {

struct Probe {
  bool compiled = false;    // this binary contains the CUDA backend
  bool usable = false;      // a device is present, the driver is new enough, our arch runs
  std::string error;        // why not usable, e.g. "no NVIDIA driver (cudaErrorInsufficientDriver: ...)"
  std::string device_name;  // e.g. "NVIDIA H100 80GB HBM3"
  int device_count = 0;
  int compute_major = 0, compute_minor = 0;
  int runtime_version = 0;     // cudaRuntimeGetVersion
  int driver_version = 0;      // cudaDriverGetVersion (0 without a driver)
  std::string compiled_archs;  // e.g. "sm_75,sm_80,sm_86,sm_89,sm_90,compute_90"
};

// Probes once and caches the answer; never throws.
const Probe& probe();

// Device memory (cuda_memory.cu). device_free releases the memory once the work queued on
// the launchers' streams before the call has run (NOTE(stream-ordered release)); it never
// waits. Errors are ignored.
void* device_alloc(size_t bytes);  // cudaMalloc
void device_free(void* ptr) noexcept;
void copy_host_to_device(void* dst, const void* src, size_t bytes);  // synchronous
void copy_device_to_host(void* dst, const void* src, size_t bytes);  // synchronous
void zero(void* ptr, size_t bytes);                                  // synchronous
// What the driver knows of the allocation holding ptr: whether it is device (or managed)
// memory of the current device, and its extent [base, base + size) when the driver can say.
struct DeviceAllocation {
  bool device_memory = false;
  bool extent_known = false;
  uintptr_t base = 0;
  size_t size = 0;
};
DeviceAllocation device_allocation(const void* ptr);
// dst[i] = float(src[i]) for n elements of dtype src_dtype, on device, synchronous.
void convert_to_float32(float* dst, const void* src, DType src_dtype, int64_t n);

// Checkpoint staging (native/checkpoint/transfer.cpp): page-locked host buffers and a stream
// whose copies overlap the file reads and writes. Its copies follow all device work queued
// before it was created (on the legacy default stream and every blocking stream).
void* alloc_pinned(size_t bytes);  // cudaHostAlloc
void free_pinned(void* ptr) noexcept;
class CopyStream {
 public:
  CopyStream();
  ~CopyStream();
  CopyStream(const CopyStream&) = delete;
  CopyStream& operator=(const CopyStream&) = delete;
  // Queued; they return at once.
  void device_to_host(void* dst, const void* src, size_t bytes);
  void host_to_device(void* dst, const void* src, size_t bytes);
  // mark(slot) records the point after the copies queued so far; wait(slot) blocks until
  // they are done (slot 0 or 1: one per staging buffer). wait_all() waits for everything.
  void mark(int slot);
  void wait(int slot);
  void wait_all();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The optional pass over an optimizer's grads before its step (GradScaler, gradient
// clipping), on the launcher's stream. Its results stay on the device for the next
// launch(..., use_prepass = true): found_inf makes that launch change nothing, and each
// tensor's clip coefficient (clip_coefficient() of grad_transform.h, from float64 sums of
// (g * inv_scale)^2 in the order of NOTE(deterministic reductions), block_reduce.h)
// scales its grads. No host round trip unless read_found_inf() is called.
using GradPrepass = fo::GradPrepass;

// Standalone grad operations (clipGradNorm / clipGradValue on any list of grads), on the
// legacy default stream, synchronous.
using GradRef = fo::GradRef;
// Per tensor, in float64 with a fixed reduction order: sum |g|^p, or max |g| when p is
// infinite; out[i] for grads[i]. Non-finite elements propagate (inf / NaN results).
void grad_norm_sums(const std::vector<GradRef>& grads, double norm_type, double* out);
// g = g * coef (rounded to the grad's dtype), in place.
void scale_grads(const std::vector<GradRef>& grads, float coef);
// g = min(max(g, lo), hi), in place; NaN stays NaN.
void clamp_grads(const std::vector<GradRef>& grads, float lo, float hi);

using NothingLaunched = fo::NothingLaunched;

// One optimizer's launches, the CUDA side of the backend contract (native/common/backend.h):
// its own stream, a device-resident tensor table rebuilt only when set_tensors is called,
// this step's grad pointers (set_grads: no table upload and no wait), and one multi-tensor
// launch per (param dtype, grad dtype) combination per step, enqueued without waiting.
// metrics() is synchronous; copies run on the launcher's stream, ordered after its steps and
// waiting for nobody else's work. Declared once for every algorithm: each algorithm's .cu
// file defines Launcher<Tensor, Slot>::Impl over its element operation (launcher_impl.cuh,
// multi_tensor.cuh) and instantiates the class.
template <class Tensor, class Slot>
class Launcher final : public Backend<Tensor, Slot> {
 public:
  Launcher();
  ~Launcher() override;
  Launcher(const Launcher&) = delete;
  Launcher& operator=(const Launcher&) = delete;

  void set_tensors(const std::vector<Tensor>& tensors) override;
  void set_grads(const std::vector<const void*>& grads) override;
  // Throws NothingLaunched when it failed before queuing anything.
  void launch(const Slot* slots, int slot_count, bool use_prepass) override;
  void prepare_grads(const GradPrepass& pass) override;
  bool read_found_inf() override;
  void synchronize() override;
  void metrics(const Slot* slots, int slot_count, MetricSums* out) override;
  void wait_for_event(void* event) override;
  void* stream() const override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void to_float32(float* dst, const void* src, DType src_dtype, int64_t n) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

using AdamWLauncher = Launcher<AdamWTensor, AdamWSlot>;
using LionLauncher = Launcher<LionTensor, LionSlot>;

}  // namespace fo::cuda

#if defined(FO_CUDA_STUB)
#include "launcher_stub.h"  // a build without CUDA: Launcher<T, S> for every algorithm
#endif
