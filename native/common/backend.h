#pragma once
// The backend contract: what the engine (native/core/engine.h) asks of a backend, declared
// once for both. cpu::ChunkRunner (native/cpu/chunk_runner.h) and cuda::Launcher
// (native/cuda/cuda_backend.h) implement it for every algorithm; Tensor and Slot are the
// algorithm's plan entry and per-step scalars (AdamWTensor / AdamWSlot, ...). The engine holds
// one Backend and never asks which one it is.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "dtype.h"
#include "grad_transform.h"
#include "metrics.h"

namespace fo {

// Thrown by a launch that failed before any of its work was queued: the step changed
// nothing, and the optimizer may simply try again. Any other exception from launch() means
// part of the work may have been queued (the engine then refuses to continue: broken()).
struct NothingLaunched : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class Tensor, class Slot>
class Backend {
 public:
  virtual ~Backend() = default;

  // The tensor table (rebuilt only when the launch plan changed); its grad pointers become
  // this step's.
  virtual void set_tensors(const std::vector<Tensor>& tensors) = 0;
  // This step's grad pointers, one per tensor of the table, when only they changed.
  virtual void set_grads(const std::vector<const void*>& grads) = 0;
  // The pre-step pass over the grads (inf check, clip-by-norm coefficients); its results stay
  // with the backend for the next launch(..., use_prepass = true).
  virtual void prepare_grads(const GradPrepass& pass) = 0;
  // Whether the last prepare_grads found an inf/NaN grad (CUDA: waits for the stream).
  virtual bool read_found_inf() = 0;
  // Updates every tensor of the table; slots[t.slot] holds each tensor's scalars. The CPU
  // returns when done; CUDA enqueues. Throws NothingLaunched when nothing was run or queued.
  virtual void launch(const Slot* slots, int slot_count, bool use_prepass) = 0;
  // Metric sums of every tensor of the table, out[i] for tensor i (nothing is written);
  // synchronous, the same bits on both backends (fixed reduction order).
  virtual void metrics(const Slot* slots, int slot_count, MetricSums* out) = 0;
  // Waits for the queued steps (nothing to wait for on the CPU).
  virtual void synchronize() = 0;
  // Later steps wait on the device for a cudaEvent_t of the caller's (CUDA only: the CPU
  // throws a TypeError).
  virtual void wait_for_event(void* event) = 0;
  // The cudaStream_t the steps run on; null on the CPU.
  virtual void* stream() const = 0;
  // Synchronous copies between host memory and memory the steps use, ordered after the
  // steps queued so far.
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  // dst[i] = float(src[i]) for n elements of a float16/bfloat16 array in backend memory
  // (a master seeded from its half param), synchronous.
  virtual void to_float32(float* dst, const void* src, DType src_dtype, int64_t n) = 0;
};

}  // namespace fo
