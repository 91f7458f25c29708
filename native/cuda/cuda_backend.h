#pragma once
// The CUDA backend as seen from plain C++ (native/core): no CUDA or N-API types cross this
// line. Implemented by cuda_device.cu, cuda_adamw.cu and cuda_lion.cu (over multi_tensor.cuh) when nvcc is available,
// and by cuda_stub.cpp (every call reports "not compiled") when it is not. Errors are thrown as std::runtime_error with
// the CUDA error name and a message.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>
#include "../common/adamw_plan.h"
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

// Thrown by a launch that failed before any of its device work was queued: the step
// changed nothing, and the optimizer may simply try again.
struct NothingLaunched : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One optimizer's launches: its own stream, a device-resident tensor table rebuilt only when
// set_tensors is called, this step's grad pointers, and one multi-tensor launch per (param
// dtype, grad dtype) combination per step. Declared once for every algorithm: Tensor and
// Slot are its plan entry and per-step scalars (AdamWTensor / AdamWSlot, ...); each
// algorithm's .cu file instantiates it over its element operation (multi_tensor.cuh).
template <class Tensor, class Slot>
class Launcher {
 public:
  Launcher();
  ~Launcher();
  Launcher(const Launcher&) = delete;
  Launcher& operator=(const Launcher&) = delete;

  // Uploads the tensor table (device pointers) and the block -> (tensor, chunk) map; the
  // table's grad pointers become this step's.
  void set_tensors(const std::vector<Tensor>& tensors);
  // This step's grad pointers, one per tensor of the table, when only they changed: no table
  // upload and no wait.
  void set_grads(const std::vector<const void*>& grads);
  // Enqueues the update of every tensor given to set_tensors on the launcher's stream;
  // returns without waiting. slots[t.slot] holds each tensor's scalars. With use_prepass the
  // kernels read the results of the last prepare_grads (skip flag, clip coefficients).
  // Throws NothingLaunched when it failed before queuing anything.
  void launch(const Slot* slots, int slot_count, bool use_prepass = false);
  void prepare_grads(const GradPrepass& pass);
  // Waits for the stream and returns whether the last prepare_grads found an inf/NaN grad.
  bool read_found_inf();
  void synchronize();
  // Metric sums of every tensor of the last set_tensors, out[i] for tensor i, where
  // "update" is what launch(slots) would subtract from the param (nothing is written).
  // Synchronous; the same inputs give the same bits (fixed reduction order).
  void metrics(const Slot* slots, int slot_count, MetricSums* out);
  // Later launches wait for `event` (a cudaEvent_t of the caller's), without the host waiting.
  void wait_for_event(void* event);
  // The launcher's cudaStream_t, for callers that order their own work after its steps.
  void* stream() const;
  // Synchronous copies between host memory and device memory its steps use, on its own
  // stream: ordered after its steps, and waiting for nobody else's work.
  void copy_to_host(void* dst, const void* src, size_t bytes);
  void copy_to_device(void* dst, const void* src, size_t bytes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

using AdamWLauncher = Launcher<AdamWTensor, AdamWSlot>;
using LionLauncher = Launcher<LionTensor, LionSlot>;

}  // namespace fo::cuda
