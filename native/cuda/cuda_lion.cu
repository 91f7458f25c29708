// The fused multi-tensor Lion step (llm-foundry's DecoupledLionW) and its metrics. The
// launch machinery is multi_tensor.cuh; this file says what Lion reads and writes per element.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "element_access.cuh"
#include "launcher_impl.cuh"
#include "multi_tensor.cuh"

namespace fo::cuda {
namespace {

struct LionOp {
  using Tensor = LionTensor;
  using Slot = LionSlot;
  static constexpr const char* kLauncher = "LionLauncher";
  static constexpr const char* kArrays = "param, grad or exp_avg";
  static constexpr int kStates = 1;  // exp_avg
  static bool has_arrays(const LionTensor& t) { return t.param && t.grad && t.exp_avg; }
  __device__ static bool uses_state(int, const LionSlot&) { return true; }

  // Lion keeps one moment, so a step moves 20 bytes per fp32 element with fp32 state (read
  // p, g, m, write p, m), 16 with bf16 state, 14 with 8-bit state.
  struct Rule {
    const LionSlot& s;
    __device__ Rule(const LionTensor&, const LionSlot& slot) : s(slot) {}
    __device__ __forceinline__ float update(float w, float g, float (&st)[kStates]) const {
      return lion_update(w, g, st[0], s);
    }
    __device__ __forceinline__ void metrics(float w, float g, const float (&st)[kStates], MetricSums& acc) const {
      lion_metrics(w, g, st[0], s, acc);
    }
  };
};

}  // namespace

template <>
struct LionLauncher::Impl : DefaultImpl<LionOp> {};

template class Launcher<LionTensor, LionSlot>;

}  // namespace fo::cuda
