#pragma once
// The CPU backend's scheduler, shared by every optimizer: each tensor cut into chunks of
// kChunkElements, the chunks spread over the thread pool, one pass over memory per chunk.
// Metrics reduce per chunk and then per tensor in chunk order, so the sums do not depend
// on which thread ran which chunk (NOTE(deterministic reductions), block_reduce.h).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../common/adamw_plan.h"
#include "../common/grad_transform.h"
#include "../common/metrics.h"
#include "grad_ops.h"
#include "thread_pool.h"

namespace fo::cpu {

// Plan: AdamWTensor or LionTensor. Kernels: a type with
//   static UpdateFn update_fn(DType param, DType grad);
//   static MetricsFn metrics_fn(DType param, DType grad);
template <typename Plan, typename Slot, typename Kernels>
class ChunkRunner {
 public:
  void set_tensors(const std::vector<Plan>& tensors) {
    tensors_ = tensors;
    chunks_.clear();
    items_.clear();
    // Work items hold consecutive chunks of about kChunkElements elements in all, so many
    // small tensors share one item instead of each costing a trip through the pool.
    int64_t item_elements = 0;
    for (size_t i = 0; i < tensors_.size(); ++i)
      for (int64_t b = 0; b < tensors_[i].numel; b += kChunkElements) {
        const int64_t e = std::min(b + kChunkElements, tensors_[i].numel);
        if (items_.empty() || item_elements + (e - b) > kChunkElements) {
          items_.push_back(chunks_.size());
          item_elements = 0;
        }
        chunks_.push_back({int32_t(i), b, e});
        item_elements += e - b;
      }
    items_.push_back(chunks_.size());  // end of the last item
  }

  // This step's grad pointers, one per tensor of the last set_tensors (the engine checks them).
  void set_grads(const std::vector<const void*>& grads) {
    for (size_t i = 0; i < tensors_.size() && i < grads.size(); ++i) tensors_[i].grad = grads[i];
  }

  // With use_prepass, the coefficients of the last prepare_grads scale each tensor's grads
  // (the engine does not run a step whose prepass found an inf).
  void run(const Slot* slots, bool use_prepass = false) const {
    for_each_item([&](size_t first, size_t last) {
      for (size_t c = first; c < last; ++c) {
        const Chunk& chunk = chunks_[c];
        const Plan& t = tensors_[size_t(chunk.tensor)];
        const float coef = use_prepass ? coefs_[size_t(chunk.tensor)] : 1.0f;
        Kernels::update_fn(t.param_dtype, t.grad_dtype)(t, slots[t.slot], chunk.begin, chunk.end, coef);
      }
    });
  }

  // The pre-step pass over the grads: inf check and clip-by-norm coefficients.
  void prepare_grads(const GradPrepass& pass) {
    std::vector<GradPartial> partial(chunks_.size());
    for_each_item([&](size_t first, size_t last) {
      for (size_t c = first; c < last; ++c) {
        const Chunk& chunk = chunks_[c];
        const Plan& t = tensors_[size_t(chunk.tensor)];
        grad_partial(t.grad, t.grad_dtype, chunk.begin, chunk.end, pass.inv_scale, &partial[c]);
      }
    });
    // Sums in chunk order, then tensor order, as the CUDA kernels add them (NOTE(deterministic
    // reductions), block_reduce.h). Non-finite elements are only a flag past the chunk: a
    // count over all chunks could overflow int32.
    std::vector<double> tensor_sum(tensors_.size(), 0.0);
    bool any_nonfinite = false;
    for (size_t c = 0; c < chunks_.size(); ++c) {
      tensor_sum[size_t(chunks_[c].tensor)] += partial[c].sum_sq;
      any_nonfinite |= partial[c].nonfinite != 0;
    }
    double total = 0.0;
    for (double t : tensor_sum) total += t;
    found_inf_ = pass.check_finite && any_nonfinite;
    coefs_.resize(tensors_.size());
    for (size_t i = 0; i < tensors_.size(); ++i)
      coefs_[i] = clip_coefficient(pass.clip, tensor_sum[i], total, pass.max_norm);
  }

  bool read_found_inf() const { return found_inf_; }

  // out[i]: the metric sums of tensor i.
  void metrics(const Slot* slots, MetricSums* out) const {
    std::vector<MetricSums> partial(chunks_.size());
    for_each_item([&](size_t first, size_t last) {
      for (size_t c = first; c < last; ++c) {
        const Chunk& chunk = chunks_[c];
        const Plan& t = tensors_[size_t(chunk.tensor)];
        Kernels::metrics_fn(t.param_dtype, t.grad_dtype)(t, slots[t.slot], chunk.begin, chunk.end, &partial[c]);
      }
    });
    for (size_t i = 0; i < tensors_.size(); ++i) out[i] = MetricSums{};
    for (size_t c = 0; c < chunks_.size(); ++c) out[size_t(chunks_[c].tensor)].add(partial[c]);
  }

 private:
  struct Chunk {
    int32_t tensor;
    int64_t begin, end;
  };

  // fn(first_chunk, end_chunk) for every work item, on the pool (inline for one item).
  template <typename Fn>
  void for_each_item(const Fn& fn) const {
    const int64_t items = chunks_.empty() ? 0 : int64_t(items_.size()) - 1;
    ThreadPool::instance().parallel_for(items, [&](int64_t i) { fn(items_[size_t(i)], items_[size_t(i) + 1]); });
  }

  std::vector<Plan> tensors_;
  std::vector<Chunk> chunks_;
  std::vector<size_t> items_;  // item i is chunks_[items_[i], items_[i + 1])
  std::vector<float> coefs_;   // per tensor, from the last prepare_grads
  bool found_inf_ = false;
};

}  // namespace fo::cpu
