// The fused multi-tensor SGD step (torch.optim.SGD) and its metrics. The launch machinery is
// multi_tensor.cuh; this file says what SGD reads and writes per element.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "../common/sgd_plan.h"
#include "cuda_backend.h"
#include "cuda_check.h"
#include "element_access.cuh"
#include "launcher_impl.cuh"
#include "multi_tensor.cuh"

namespace fo::cuda {
namespace {

struct SgdOp {
  using Tensor = SgdTensor;
  using Slot = SgdSlot;
  static constexpr const char* kLauncher = "SgdLauncher";
  static constexpr const char* kArrays = "param or grad";
  static constexpr int kStates = 1;  // momentum_buffer
  // The momentum buffer is optional: a tensor without one (momentum 0) steps without it.
  static bool has_arrays(const SgdTensor& t) { return t.param && t.grad; }
  __device__ static bool uses_state(int, const SgdSlot&) { return true; }

  // With momentum a step moves 20 bytes per fp32 element with fp32 state (read p, g, buf,
  // write p, buf), without 12.
  struct Rule {
    const SgdSlot& s;
    bool momentum;  // the tensor has a momentum buffer (the same for every block of it)
    __device__ Rule(const SgdTensor& t, const SgdSlot& slot) : s(slot), momentum(t.momentum_buffer != nullptr) {}
    __device__ __forceinline__ float update(float w, float g, float (&st)[kStates]) const {
      return momentum ? sgd_update(w, g, st[0], s) : sgd_update(w, g, s);
    }
    __device__ __forceinline__ void metrics(float w, float g, const float (&st)[kStates], MetricSums& acc) const {
      sgd_metrics(w, g, momentum ? &st[0] : nullptr, s, acc);
    }
  };
};

}  // namespace

template <>
struct Launcher<SgdTensor, SgdSlot>::Impl : DefaultImpl<SgdOp> {};

template class Launcher<SgdTensor, SgdSlot>;

}  // namespace fo::cuda
