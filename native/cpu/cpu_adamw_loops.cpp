// AdamW loops of the CPU backend: the shared rule (native/common/adamw_rule.h) over one
// chunk. Each entry point is compiled for several x86-64 levels (FO_SIMD_CLONES).
#include <type_traits>

#include "../common/adamw_plan.h"
#include "../common/adamw_rule.h"
#include "../common/block_reduce.h"
#include "chunk_runner_impl.h"
#include "half_blocks.h"

namespace fo::cpu {

namespace {

// Flags are template arguments so each loop body is branch-free and vectorizes. For half
// params the fp32 master (when kept) is updated and the param rewritten from it in the same
// pass; without a master the half value itself is the starting point.
// i walks the grad; j is the param/state element it updates (the same for dense grads).
template <typename Param, typename Grad, bool Amsgrad, bool Master, bool Stochastic, bool Sparse>
FO_INLINE void update_loop(const AdamWTensor& t, const AdamWSlot& slot, int64_t begin, int64_t end, float coef) {
  AdamWSlot s = slot;
  s.flags = Amsgrad ? (s.flags | kAdamWAmsgrad) : (s.flags & ~uint32_t(kAdamWAmsgrad));
  void* __restrict param = t.param;
  const void* __restrict grad = t.grad;
  float* __restrict master = t.master;
  float* __restrict m = fp32_state(t.exp_avg);
  float* __restrict v = fp32_state(t.exp_avg_sq);
  float* __restrict vmax = fp32_state(t.max_exp_avg_sq);
  const uint32_t key = Stochastic ? rounding_stream_key(s.rng_key0, s.rng_key1, t.rng_stream) : 0;
  float unused = 0.0f;
  for (int64_t i = begin; i < end; ++i) {
    const int64_t j = Sparse ? sparse_state_index(t.rows, t.row_width, i) : i;
    float& vm = Amsgrad ? vmax[j] : unused;
    const float w = Master ? master[j] : Param::load(param, j);
    const float g = transform_grad(Grad::load(grad, i), coef, s.grad);
    const float updated = adamw_update(w, g, m[j], v[j], vm, s);
    if (Master) master[j] = updated;
    store_param<Param, Stochastic>(param, j, updated, key);
  }
}

// Dense fp16 params: blocks converted with F16C around a loop on floats (see half_blocks.h).
template <bool GradHalf, bool Amsgrad, bool Master>
FO_INLINE void f16_block_loop(const AdamWTensor& t, const AdamWSlot& slot, int64_t begin, int64_t end, float coef) {
  AdamWSlot s = slot;
  s.flags = Amsgrad ? (s.flags | kAdamWAmsgrad) : (s.flags & ~uint32_t(kAdamWAmsgrad));
  constexpr int64_t kBlock = 512;
  alignas(64) float wbuf[kBlock];
  alignas(64) float gbuf[kBlock];
  uint16_t* param = static_cast<uint16_t*>(t.param);
  float unused = 0.0f;
  for (int64_t b = begin; b < end; b += kBlock) {
    const int64_t n = end - b < kBlock ? end - b : kBlock;
    float* __restrict w = Master ? t.master + b : wbuf;
    if (!Master) half_block_to_float(param + b, wbuf, n);
    const float* __restrict g = GradHalf ? gbuf : static_cast<const float*>(t.grad) + b;
    if (GradHalf) half_block_to_float(static_cast<const uint16_t*>(t.grad) + b, gbuf, n);
    float* __restrict m = fp32_state(t.exp_avg) + b;
    float* __restrict v = fp32_state(t.exp_avg_sq) + b;
    float* __restrict vmax = Amsgrad ? fp32_state(t.max_exp_avg_sq) + b : nullptr;
    for (int64_t j = 0; j < n; ++j) {
      float& vm = Amsgrad ? vmax[j] : unused;
      w[j] = adamw_update(w[j], transform_grad(g[j], coef, s.grad), m[j], v[j], vm, s);
    }
    // With a master the half param is write-only here: stream it past the cache.
    if (Master)
      float_block_to_half_streaming(w, param + b, n);
    else
      float_block_to_half(w, param + b, n);
  }
  if (Master) finish_streaming_stores();
}

// Flags become template arguments here, once per chunk.
template <typename Param, typename Grad, bool Master, bool Stochastic>
FO_INLINE void update_amsgrad(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e, float coef) {
  const bool amsgrad = s.flags & kAdamWAmsgrad;
  if constexpr (std::is_same_v<Param, F16>) {
    if (!t.rows) {
      constexpr bool grad_half = std::is_same_v<Grad, F16>;
      if (amsgrad)
        f16_block_loop<grad_half, true, Master>(t, s, b, e, coef);
      else
        f16_block_loop<grad_half, false, Master>(t, s, b, e, coef);
      return;
    }
  }
  if (t.rows) {
    if (amsgrad)
      update_loop<Param, Grad, true, Master, Stochastic, true>(t, s, b, e, coef);
    else
      update_loop<Param, Grad, false, Master, Stochastic, true>(t, s, b, e, coef);
  } else {
    if (amsgrad)
      update_loop<Param, Grad, true, Master, Stochastic, false>(t, s, b, e, coef);
    else
      update_loop<Param, Grad, false, Master, Stochastic, false>(t, s, b, e, coef);
  }
}

template <typename Param, typename Grad>
FO_INLINE void update_chunk(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e, float coef) {
  if constexpr (std::is_same_v<Param, F32>) {
    update_amsgrad<Param, Grad, false, false>(t, s, b, e, coef);
  } else {
    const bool stochastic = std::is_same_v<Param, BF16> && (s.flags & kStochasticRounding);
    if (t.master) {
      if (stochastic)
        update_amsgrad<Param, Grad, true, true>(t, s, b, e, coef);
      else
        update_amsgrad<Param, Grad, true, false>(t, s, b, e, coef);
    } else {
      if (stochastic)
        update_amsgrad<Param, Grad, false, true>(t, s, b, e, coef);
      else
        update_amsgrad<Param, Grad, false, false>(t, s, b, e, coef);
    }
  }
}

template <typename Param, typename Grad>
FO_INLINE void metrics_chunk(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e, MetricSums* out) {
  const bool amsgrad = s.flags & kAdamWAmsgrad;
  // In the CUDA block's order (NOTE(deterministic reductions), block_reduce.h).
  *out = reduce_in_block_order<MetricSums>(
      e - b,
      [&](MetricSums& acc, int64_t k) {
        const int64_t i = b + k;
        const float w = t.master ? t.master[i] : Param::load(t.param, i);
        adamw_metrics(w, Grad::load(t.grad, i), fp32_state(t.exp_avg)[i], fp32_state(t.exp_avg_sq)[i],
                      amsgrad ? fp32_state(t.max_exp_avg_sq)[i] : 0.0f, s, acc);
      },
      [](MetricSums& acc, const MetricSums& o) { acc.add(o); });
}

}  // namespace

FO_CPU_ALGORITHM(adamw, AdamWTensor, AdamWSlot)

}  // namespace fo::cpu
