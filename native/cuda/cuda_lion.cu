// The fused multi-tensor Lion step (llm-foundry's DecoupledLionW) and its metrics. The
// launch machinery is multi_tensor.cuh; this file says what Lion reads and writes per element.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "element_access.cuh"
#include "multi_tensor.cuh"

namespace fo::cuda {
namespace {

struct LionOp {
  using Tensor = LionTensor;
  using Slot = LionSlot;
  static constexpr const char* kLauncher = "LionLauncher";
  static constexpr const char* kArrays = "param, grad or exp_avg";
  static bool has_arrays(const LionTensor& t) { return t.param && t.grad && t.exp_avg; }

  // The arrays of one chunk, already offset to the chunk's first element. Lion keeps one
  // moment, so a step moves 20 bytes per fp32 element: read p, g, m, write p, m.
  template <DType P, DType G>
  struct Chunk {
    mt::ParamRef<P> param;
    const storage_t<G>* grad;
    float* exp_avg;

    __device__ Chunk(const LionTensor& t, const LionSlot&, int64_t begin)
        : param(t.param, t.master, begin),
          grad(static_cast<const storage_t<G>*>(t.grad) + begin),
          exp_avg(t.exp_avg + begin) {}

    __device__ bool aligned() const {
      return param.aligned() && mt::vec_aligned(grad) && mt::vec_aligned(exp_avg);
    }

    // Elements [i, i + N) into w, g, m. All loads are issued before the math, so the N-wide
    // path keeps three vector loads in flight per thread.
    template <int N>
    __device__ __forceinline__ void load_all(int i, float (&w)[N], float (&g)[N],
                                             float (&m)[N]) const {
      param.template load<N>(i, w);
      load<G, N>(grad + i, g);
      load<DType::Float32, N>(exp_avg + i, m);
    }

    // Updates elements [i, i + N) of the chunk.
    template <int N>
    __device__ __forceinline__ void update(int i, const LionSlot& s) const {
      float w[N], g[N], m[N];
      load_all<N>(i, w, g, m);
#pragma unroll
      for (int k = 0; k < N; ++k) w[k] = lion_update(w[k], g[k], m[k], s);
      param.template store<N>(i, w);
      store<DType::Float32, N>(exp_avg + i, m);
    }

    // Adds the metrics of elements [i, i + N), in index order, to acc; writes nothing.
    template <int N>
    __device__ __forceinline__ void metrics(int i, const LionSlot& s, MetricSums& acc) const {
      float w[N], g[N], m[N];
      load_all<N>(i, w, g, m);
#pragma unroll
      for (int k = 0; k < N; ++k) lion_metrics(w[k], g[k], m[k], s, acc);
    }
  };
};

}  // namespace

struct LionLauncher::Impl {
  mt::Launcher<LionOp> core;
};

LionLauncher::LionLauncher() : impl_(std::make_unique<Impl>()) {}

LionLauncher::~LionLauncher() = default;

void LionLauncher::set_tensors(const std::vector<LionTensor>& tensors) {
  impl_->core.set_tensors(tensors);
}

void LionLauncher::launch(const LionSlot* slots, int slot_count) {
  impl_->core.check_slots(slots, slot_count, "LionLauncher::launch");
  impl_->core.launch(slots, slot_count);
}

void LionLauncher::synchronize() { impl_->core.synchronize(); }

void LionLauncher::metrics(const LionSlot* slots, int slot_count, MetricSums* out) {
  impl_->core.check_slots(slots, slot_count, "LionLauncher::metrics");
  impl_->core.metrics(slots, slot_count, out);
}

}  // namespace fo::cuda
