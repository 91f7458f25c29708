#pragma once
// cpu::ChunkRunner<Tensor, Slot> (chunk_runner.h) written once, and FO_CPU_ALGORITHM, which an
// algorithm's loops file (cpu_adamw_loops.cpp, ...) ends with: it compiles the file's
// update_chunk<Param, Grad> and metrics_chunk<Param, Grad> for every (param dtype, grad dtype)
// layout, for several x86-64 levels (FO_SIMD_CLONES), and instantiates the runner over them.
// Internal to the CPU backend.
#include <algorithm>
#include <cstring>

#include "../common/adamw_plan.h"  // kChunkElements
#include "../common/errors.h"
#include "../common/half_convert.h"
#include "chunk_runner.h"
#include "element_io.h"
#include "grad_ops.h"
#include "state_blocks.h"
#include "thread_pool.h"

namespace fo::cpu {

// An algorithm's per-chunk loops: static update(t, s, begin, end, coef) and
// metrics(t, s, begin, end, out), defined by FO_CPU_ALGORITHM.
template <class Tensor, class Slot>
struct Kernels;

template <class T, class S>
void ChunkRunner<T, S>::set_tensors(const std::vector<T>& tensors) {
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
template <class T, class S>
void ChunkRunner<T, S>::set_grads(const std::vector<const void*>& grads) {
  for (size_t i = 0; i < tensors_.size() && i < grads.size(); ++i) tensors_[i].grad = grads[i];
}

template <class T, class S>
void ChunkRunner<T, S>::launch(const S* slots, int, bool use_prepass) {
  try {
    for_each_item([&](size_t first, size_t last) {
      for (size_t c = first; c < last; ++c) {
        const Chunk& chunk = chunks_[c];
        const T& t = tensors_[size_t(chunk.tensor)];
        const float coef = use_prepass ? coefs_[size_t(chunk.tensor)] : 1.0f;
        const S& slot = slots[t.slot];
        if (t.state.dtype == StateDType::Float32) {
          Kernels<T, S>::update(t, slot, chunk.begin, chunk.end, coef);
        } else {
          with_decoded_state(t, slot, chunk.begin, chunk.end, /*write=*/true, [&](const T& view, int64_t b, int64_t e) {
            Kernels<T, S>::update(view, slot, b, e, coef);
          });
        }
      }
    });
  } catch (const NothingLaunched&) {
    throw;
  } catch (const std::exception& e) {
    throw NothingLaunched(e.what());  // the pool ran nothing or the step failed before it began
  }
}

// The pre-step pass over the grads: inf check and clip-by-norm coefficients.
template <class T, class S>
void ChunkRunner<T, S>::prepare_grads(const GradPrepass& pass) {
  std::vector<GradPartial> partial(chunks_.size());
  for_each_item([&](size_t first, size_t last) {
    for (size_t c = first; c < last; ++c) {
      const Chunk& chunk = chunks_[c];
      const T& t = tensors_[size_t(chunk.tensor)];
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

// out[i]: the metric sums of tensor i.
template <class T, class S>
void ChunkRunner<T, S>::metrics(const S* slots, int, MetricSums* out) {
  std::vector<MetricSums> partial(chunks_.size());
  for_each_item([&](size_t first, size_t last) {
    for (size_t c = first; c < last; ++c) {
      const Chunk& chunk = chunks_[c];
      const T& t = tensors_[size_t(chunk.tensor)];
      if (t.state.dtype == StateDType::Float32) {
        Kernels<T, S>::metrics(t, slots[t.slot], chunk.begin, chunk.end, &partial[c]);
      } else {
        std::vector<float> scratch[3];
        const T view = decoded_chunk(t, chunk.begin, chunk.end, scratch);
        Kernels<T, S>::metrics(view, slots[t.slot], chunk.begin, chunk.end, &partial[c]);
      }
    }
  });
  for (size_t i = 0; i < tensors_.size(); ++i) out[i] = MetricSums{};
  for (size_t c = 0; c < chunks_.size(); ++c) out[size_t(chunks_[c].tensor)].add(partial[c]);
}

template <class T, class S>
void ChunkRunner<T, S>::wait_for_event(void*) {
  throw TypeError("waitFor: the optimizer runs on the CPU, where steps need no ordering with CUDA work");
}

template <class T, class S>
void ChunkRunner<T, S>::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}

template <class T, class S>
void ChunkRunner<T, S>::copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}

template <class T, class S>
void ChunkRunner<T, S>::to_float32(float* dst, const void* src, DType src_dtype, int64_t n) {
  const uint16_t* bits = static_cast<const uint16_t*>(src);
  if (src_dtype == DType::Float16)
    for (int64_t i = 0; i < n; ++i) dst[i] = half_bits_to_float(bits[i]);
  else
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_bits_to_float(bits[i]);
}

template <class T, class S>
template <typename Fn>
void ChunkRunner<T, S>::for_each_item(const Fn& fn) const {
  const int64_t items = chunks_.empty() ? 0 : int64_t(items_.size()) - 1;
  ThreadPool::instance().parallel_for(items, [&](int64_t i) { fn(items_[size_t(i)], items_[size_t(i) + 1]); });
}

}  // namespace fo::cpu

// The two entry points of one layout (NAME: f32_f32, ...), over the loops file's
// update_chunk and metrics_chunk.
#define FO_CPU_LAYOUT(PREFIX, TENSOR, SLOT, NAME, PARAM, GRAD)                                                         \
  FO_SIMD_CLONES void PREFIX##_update_##NAME(const TENSOR& t, const SLOT& s, int64_t b, int64_t e, float coef) {       \
    update_chunk<PARAM, GRAD>(t, s, b, e, coef);                                                                       \
  }                                                                                                                    \
  FO_SIMD_CLONES void PREFIX##_metrics_##NAME(const TENSOR& t, const SLOT& s, int64_t b, int64_t e, MetricSums* out) { \
    metrics_chunk<PARAM, GRAD>(t, s, b, e, out);                                                                       \
  }

// Inside namespace fo::cpu, after the loops: every layout (in layout_index order), the
// Kernels the runner calls, and the runner itself.
#define FO_CPU_ALGORITHM(PREFIX, TENSOR, SLOT)                                                               \
  FO_CPU_LAYOUT(PREFIX, TENSOR, SLOT, f32_f32, F32, F32)                                                     \
  FO_CPU_LAYOUT(PREFIX, TENSOR, SLOT, f16_f16, F16, F16)                                                     \
  FO_CPU_LAYOUT(PREFIX, TENSOR, SLOT, f16_f32, F16, F32)                                                     \
  FO_CPU_LAYOUT(PREFIX, TENSOR, SLOT, bf16_bf16, BF16, BF16)                                                 \
  FO_CPU_LAYOUT(PREFIX, TENSOR, SLOT, bf16_f32, BF16, F32)                                                   \
  template <>                                                                                                \
  struct Kernels<TENSOR, SLOT> {                                                                             \
    static void update(const TENSOR& t, const SLOT& s, int64_t b, int64_t e, float coef) {                   \
      using Fn = void (*)(const TENSOR&, const SLOT&, int64_t, int64_t, float);                              \
      static const Fn fns[] = {PREFIX##_update_f32_f32, PREFIX##_update_f16_f16, PREFIX##_update_f16_f32,    \
                               PREFIX##_update_bf16_bf16, PREFIX##_update_bf16_f32};                         \
      fns[layout_index(t.param_dtype, t.grad_dtype)](t, s, b, e, coef);                                      \
    }                                                                                                        \
    static void metrics(const TENSOR& t, const SLOT& s, int64_t b, int64_t e, MetricSums* out) {             \
      using Fn = void (*)(const TENSOR&, const SLOT&, int64_t, int64_t, MetricSums*);                        \
      static const Fn fns[] = {PREFIX##_metrics_f32_f32, PREFIX##_metrics_f16_f16, PREFIX##_metrics_f16_f32, \
                               PREFIX##_metrics_bf16_bf16, PREFIX##_metrics_bf16_f32};                       \
      fns[layout_index(t.param_dtype, t.grad_dtype)](t, s, b, e, out);                                       \
    }                                                                                                        \
  };                                                                                                         \
  template class ChunkRunner<TENSOR, SLOT>;
