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
  // The momentum buffer is optional: a tensor without one (momentum 0) steps without it.
  static bool has_arrays(const SgdTensor& t) { return t.param && t.grad; }

  // The arrays of one chunk (see LionOp in cuda_lion.cu). With momentum a step moves 20 bytes
  // per fp32 element (read p, g, buf, write p, buf), without 12.
  template <DType P, DType G>
  struct Chunk {
    mt::ParamRef<P> param;
    const storage_t<G>* grad;
    float* buf;  // null without momentum (the same for every block of the tensor)

    __device__ Chunk(const SgdTensor& t, const SgdSlot& s, int64_t grad_begin, int64_t state_begin)
        : param(t, s, state_begin),
          grad(static_cast<const storage_t<G>*>(t.grad) + grad_begin),
          buf(t.momentum_buffer ? t.momentum_buffer + state_begin : nullptr) {}

    __device__ bool aligned() const { return param.aligned() && mt::vec_aligned(grad) && mt::vec_aligned(buf); }

    template <int N, typename J>
    __device__ __forceinline__ void load_all(int i, J j, float (&w)[N], float (&g)[N], float (&m)[N]) const {
      param.template load<N>(j, w);
      load<G, N>(grad + i, g);
      if (buf) load<DType::Float32, N>(buf + j, m);
    }

    // Updates state elements [j, j + N) from grad elements [i, i + N) of the chunk (j == i
    // for dense grads); every grad goes through the slot's GradTransform first.
    template <int N, typename J>
    __device__ __forceinline__ void update(int i, J j, const SgdSlot& s, float coef) const {
      float w[N], g[N], m[N] = {};
      load_all<N>(i, j, w, g, m);
      if (buf) {
#pragma unroll
        for (int k = 0; k < N; ++k) w[k] = sgd_update(w[k], transform_grad(g[k], coef, s.grad), m[k], s);
        store<DType::Float32, N>(buf + j, m);
      } else {
#pragma unroll
        for (int k = 0; k < N; ++k) w[k] = sgd_update(w[k], transform_grad(g[k], coef, s.grad), s);
      }
      param.template store<N>(j, w);
    }

    // Adds the metrics of elements [i, i + N), in index order, to acc; writes nothing.
    template <int N>
    __device__ __forceinline__ void metrics(int i, const SgdSlot& s, MetricSums& acc) const {
      float w[N], g[N], m[N] = {};
      load_all<N>(i, i, w, g, m);
#pragma unroll
      for (int k = 0; k < N; ++k) sgd_metrics(w[k], g[k], buf ? &m[k] : nullptr, s, acc);
    }
  };
};

}  // namespace

template <>
struct Launcher<SgdTensor, SgdSlot>::Impl : DefaultImpl<SgdOp> {};

template class Launcher<SgdTensor, SgdSlot>;

}  // namespace fo::cuda
