// The fused multi-tensor AdamW step and its metrics. The launch machinery (device-resident
// tensor table, one launch per dtype combination, slot passing, metric reduction) is
// multi_tensor.cuh; this file says what AdamW reads and writes per element.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "element_access.cuh"
#include "launcher_impl.cuh"
#include "multi_tensor.cuh"

namespace fo::cuda {
namespace {

struct AdamWOp {
  using Tensor = AdamWTensor;
  using Slot = AdamWSlot;
  static constexpr const char* kLauncher = "AdamWLauncher";
  static constexpr const char* kArrays = "param, grad or moment";
  // max_exp_avg_sq is checked per step (AdamWLauncher::Impl::check_slots): only the slot
  // decides whether it is used.
  static bool has_arrays(const AdamWTensor& t) { return t.param && t.grad && t.exp_avg && t.exp_avg_sq; }

  // The arrays of one chunk: the grad offset to the chunk's first element, param and state
  // to state_begin (the same for dense grads; 0 for row-sparse ones, indexed by the absolute
  // state index).
  template <DType P, DType G>
  struct Chunk {
    mt::ParamRef<P> param;
    const storage_t<G>* grad;
    float* exp_avg;
    float* exp_avg_sq;
    float* max_exp_avg_sq;  // null unless this step's slot asks for amsgrad

    __device__ Chunk(const AdamWTensor& t, const AdamWSlot& s, int64_t grad_begin, int64_t state_begin)
        : param(t, s, state_begin),
          grad(static_cast<const storage_t<G>*>(t.grad) + grad_begin),
          exp_avg(t.exp_avg + state_begin),
          exp_avg_sq(t.exp_avg_sq + state_begin),
          // max_exp_avg_sq may be left over from an earlier amsgrad setting: only the slot
          // decides.
          max_exp_avg_sq((s.flags & kAdamWAmsgrad) ? t.max_exp_avg_sq + state_begin : nullptr) {}

    __device__ bool aligned() const {
      return param.aligned() && mt::vec_aligned(grad) && mt::vec_aligned(exp_avg) && mt::vec_aligned(exp_avg_sq) &&
             mt::vec_aligned(max_exp_avg_sq);
    }

    // Grad elements [i, i + N) into g, state elements [j, j + N) into w, m, v, vmax (0
    // without amsgrad). Every load is issued before the math, so the N-wide path keeps 4-6
    // vector loads in flight per thread: the kernels are bound by memory latency, not
    // arithmetic.
    template <int N, typename J>
    __device__ __forceinline__ void load_all(int i, J j, float (&w)[N], float (&g)[N], float (&m)[N], float (&v)[N],
                                             float (&vmax)[N]) const {
      param.template load<N>(j, w);
      load<G, N>(grad + i, g);
      load<DType::Float32, N>(exp_avg + j, m);
      load<DType::Float32, N>(exp_avg_sq + j, v);
      if (max_exp_avg_sq) load<DType::Float32, N>(max_exp_avg_sq + j, vmax);
    }

    // Updates state elements [j, j + N) from grad elements [i, i + N) of the chunk (j == i
    // for dense grads); every grad goes through the slot's GradTransform (unscale, clip
    // coefficient `coef`, clip by value) first.
    template <int N, typename J>
    __device__ __forceinline__ void update(int i, J j, const AdamWSlot& s, float coef) const {
      float w[N], g[N], m[N], v[N], vmax[N] = {};
      load_all<N>(i, j, w, g, m, v, vmax);
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const float grad = transform_grad(g[k], coef, s.grad);
        w[k] = adamw_update(w[k], grad, m[k], v[k], vmax[k], s);
      }
      param.template store<N>(j, w);
      store<DType::Float32, N>(exp_avg + j, m);
      store<DType::Float32, N>(exp_avg_sq + j, v);
      if (max_exp_avg_sq) store<DType::Float32, N>(max_exp_avg_sq + j, vmax);
    }

    // Adds the metrics of elements [i, i + N), in index order, to acc; writes nothing. The
    // raw grad: a metrics slot carries the identity transform and no coefficient applies.
    template <int N>
    __device__ __forceinline__ void metrics(int i, const AdamWSlot& s, MetricSums& acc) const {
      float w[N], g[N], m[N], v[N], vmax[N] = {};
      load_all<N>(i, i, w, g, m, v, vmax);
#pragma unroll
      for (int k = 0; k < N; ++k) adamw_metrics(w[k], g[k], m[k], v[k], vmax[k], s, acc);
    }
  };
};

}  // namespace

// max_exp_avg_sq is optional per tensor: a slot that asks for amsgrad must not reach a tensor
// without one. Checked per step without touching the tensor table.
template <>
struct AdamWLauncher::Impl : DefaultImpl<AdamWOp> {
  // [slot]: one of the slot's non-empty tensors has no max_exp_avg_sq.
  std::vector<uint8_t> slot_lacks_max;

  void set_tensors(const std::vector<AdamWTensor>& tensors) {
    // Built first, committed only once the core has accepted the table (which also rejects
    // negative slots; they are skipped here).
    std::vector<uint8_t> lacks;
    for (const AdamWTensor& t : tensors) {
      if (t.numel <= 0 || t.slot < 0 || t.max_exp_avg_sq) continue;
      if (lacks.size() <= size_t(t.slot)) lacks.resize(size_t(t.slot) + 1, 0);
      lacks[size_t(t.slot)] = 1;
    }
    core.set_tensors(tensors);
    slot_lacks_max = std::move(lacks);
  }

  void check_slots(const AdamWSlot* slots, int slot_count, const char* fn) const {
    core.check_slots(slots, slot_count, fn);  // also: every slot below is < slot_count
    for (size_t s = 0; s < slot_lacks_max.size(); ++s) {
      if ((slots[s].flags & kAdamWAmsgrad) && slot_lacks_max[s]) {
        throw std::runtime_error(std::string(fn) + ": slot " + std::to_string(s) +
                                 " uses amsgrad but one of its tensors has no max_exp_avg_sq");
      }
    }
  }
};

template class Launcher<AdamWTensor, AdamWSlot>;

}  // namespace fo::cuda
