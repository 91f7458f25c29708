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
  static bool has_arrays(const LionTensor& t) { return t.param && t.grad && t.exp_avg; }

  // The arrays of one chunk: the grad offset to the chunk's first element, param and
  // exp_avg to state_begin (the same for dense grads; 0 for row-sparse ones, indexed by the
  // absolute state index). Lion keeps one moment, so a step moves 20 bytes per fp32
  // element: read p, g, m, write p, m.
  template <DType P, DType G>
  struct Chunk {
    mt::ParamRef<P> param;
    const storage_t<G>* grad;
    float* exp_avg;

    __device__ Chunk(const LionTensor& t, const LionSlot& s, int64_t grad_begin, int64_t state_begin)
        : param(t, s, state_begin),
          grad(static_cast<const storage_t<G>*>(t.grad) + grad_begin),
          exp_avg(t.exp_avg + state_begin) {}

    __device__ bool aligned() const { return param.aligned() && mt::vec_aligned(grad) && mt::vec_aligned(exp_avg); }

    // Grad elements [i, i + N) into g, state elements [j, j + N) into w, m. All loads are
    // issued before the math, so the N-wide path keeps three vector loads in flight per
    // thread.
    template <int N, typename J>
    __device__ __forceinline__ void load_all(int i, J j, float (&w)[N], float (&g)[N], float (&m)[N]) const {
      param.template load<N>(j, w);
      load<G, N>(grad + i, g);
      load<DType::Float32, N>(exp_avg + j, m);
    }

    // Updates state elements [j, j + N) from grad elements [i, i + N) of the chunk (j == i
    // for dense grads); every grad goes through the slot's GradTransform (unscale, clip
    // coefficient `coef`, clip by value) first.
    template <int N, typename J>
    __device__ __forceinline__ void update(int i, J j, const LionSlot& s, float coef) const {
      float w[N], g[N], m[N];
      load_all<N>(i, j, w, g, m);
#pragma unroll
      for (int k = 0; k < N; ++k) {
        w[k] = lion_update(w[k], transform_grad(g[k], coef, s.grad), m[k], s);
      }
      param.template store<N>(j, w);
      store<DType::Float32, N>(exp_avg + j, m);
    }

    // Adds the metrics of elements [i, i + N), in index order, to acc; writes nothing. The
    // raw grad: a metrics slot carries the identity transform and no coefficient applies.
    template <int N>
    __device__ __forceinline__ void metrics(int i, const LionSlot& s, MetricSums& acc) const {
      float w[N], g[N], m[N];
      load_all<N>(i, i, w, g, m);
#pragma unroll
      for (int k = 0; k < N; ++k) lion_metrics(w[k], g[k], m[k], s, acc);
    }
  };
};

}  // namespace

template <>
struct LionLauncher::Impl : DefaultImpl<LionOp> {};

template class Launcher<LionTensor, LionSlot>;

}  // namespace fo::cuda
