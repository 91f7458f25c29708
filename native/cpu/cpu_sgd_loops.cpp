// SGD loops of the CPU backend: the shared rule (native/common/sgd_rule.h) over one chunk.
// A tensor has a momentum buffer or none (momentum 0): a template flag, so each loop body is
// branch-free and vectorizes.
#include <type_traits>

#include "../common/block_reduce.h"
#include "../common/sgd_plan.h"
#include "../common/sgd_rule.h"
#include "chunk_runner_impl.h"
#include "half_blocks.h"

namespace fo::cpu {

namespace {

template <bool Momentum>
FO_INLINE float step_element(float w, float g, float* buf, int64_t j, const SgdSlot& s) {
  if constexpr (Momentum)
    return sgd_update(w, g, buf[j], s);
  else
    return sgd_update(w, g, s);
}

// For half params the fp32 master (when kept) is updated and the param rewritten from it in
// the same pass; without a master the half value itself is the starting point.
// i walks the grad; j is the param/state element it updates (the same for dense grads).
template <typename Param, typename Grad, bool Momentum, bool Master, bool Stochastic, bool Sparse>
FO_INLINE void update_loop(const SgdTensor& t, const SgdSlot& slot, int64_t begin, int64_t end, float coef) {
  const SgdSlot s = slot;  // a local copy and restrict pointers: no alias checks
  void* __restrict param = t.param;
  const void* __restrict grad = t.grad;
  float* __restrict master = t.master;
  float* __restrict buf = fp32_state(t.momentum_buffer);
  const uint32_t key = Stochastic ? rounding_stream_key(s.rng_key0, s.rng_key1, t.rng_stream) : 0;
  for (int64_t i = begin; i < end; ++i) {
    const int64_t j = Sparse ? sparse_state_index(t.rows, t.row_width, i) : i;
    const float w = Master ? master[j] : Param::load(param, j);
    const float updated = step_element<Momentum>(w, transform_grad(Grad::load(grad, i), coef, s.grad), buf, j, s);
    if (Master) master[j] = updated;
    store_param<Param, Stochastic>(param, j, updated, key);
  }
}

// Dense fp16 params: blocks converted with F16C around a loop on floats (see half_blocks.h).
template <bool GradHalf, bool Momentum, bool Master>
FO_INLINE void f16_block_loop(const SgdTensor& t, const SgdSlot& slot, int64_t begin, int64_t end, float coef) {
  const SgdSlot s = slot;
  constexpr int64_t kBlock = 512;
  alignas(64) float wbuf[kBlock];
  alignas(64) float gbuf[kBlock];
  uint16_t* param = static_cast<uint16_t*>(t.param);
  for (int64_t b = begin; b < end; b += kBlock) {
    const int64_t n = end - b < kBlock ? end - b : kBlock;
    float* __restrict w = Master ? t.master + b : wbuf;
    if (!Master) half_block_to_float(param + b, wbuf, n);
    const float* __restrict g = GradHalf ? gbuf : static_cast<const float*>(t.grad) + b;
    if (GradHalf) half_block_to_float(static_cast<const uint16_t*>(t.grad) + b, gbuf, n);
    float* __restrict m = Momentum ? fp32_state(t.momentum_buffer) + b : nullptr;
    for (int64_t j = 0; j < n; ++j) w[j] = step_element<Momentum>(w[j], transform_grad(g[j], coef, s.grad), m, j, s);
    // With a master the half param is write-only here: stream it past the cache.
    if (Master)
      float_block_to_half_streaming(w, param + b, n);
    else
      float_block_to_half(w, param + b, n);
  }
  if (Master) finish_streaming_stores();
}

template <typename Param, typename Grad, bool Momentum, bool Master, bool Stochastic>
FO_INLINE void update_sparse(const SgdTensor& t, const SgdSlot& s, int64_t b, int64_t e, float coef) {
  if constexpr (std::is_same_v<Param, F16>) {
    if (!t.rows) return f16_block_loop<std::is_same_v<Grad, F16>, Momentum, Master>(t, s, b, e, coef);
  }
  if (t.rows)
    update_loop<Param, Grad, Momentum, Master, Stochastic, true>(t, s, b, e, coef);
  else
    update_loop<Param, Grad, Momentum, Master, Stochastic, false>(t, s, b, e, coef);
}

template <typename Param, typename Grad, bool Momentum>
FO_INLINE void update_rounding(const SgdTensor& t, const SgdSlot& s, int64_t b, int64_t e, float coef) {
  if constexpr (std::is_same_v<Param, F32>) {
    update_sparse<Param, Grad, Momentum, false, false>(t, s, b, e, coef);
  } else {
    const bool stochastic = std::is_same_v<Param, BF16> && (s.flags & kStochasticRounding);
    if (t.master) {
      if (stochastic)
        update_sparse<Param, Grad, Momentum, true, true>(t, s, b, e, coef);
      else
        update_sparse<Param, Grad, Momentum, true, false>(t, s, b, e, coef);
    } else {
      if (stochastic)
        update_sparse<Param, Grad, Momentum, false, true>(t, s, b, e, coef);
      else
        update_sparse<Param, Grad, Momentum, false, false>(t, s, b, e, coef);
    }
  }
}

template <typename Param, typename Grad>
FO_INLINE void update_chunk(const SgdTensor& t, const SgdSlot& s, int64_t b, int64_t e, float coef) {
  if (t.momentum_buffer)
    update_rounding<Param, Grad, true>(t, s, b, e, coef);
  else
    update_rounding<Param, Grad, false>(t, s, b, e, coef);
}

template <typename Param, typename Grad>
FO_INLINE void metrics_chunk(const SgdTensor& t, const SgdSlot& s, int64_t b, int64_t e, MetricSums* out) {
  // In the CUDA block's order (NOTE(deterministic reductions), block_reduce.h).
  *out = reduce_in_block_order<MetricSums>(
      e - b,
      [&](MetricSums& acc, int64_t k) {
        const int64_t i = b + k;
        const float w = t.master ? t.master[i] : Param::load(t.param, i);
        sgd_metrics(w, Grad::load(t.grad, i), t.momentum_buffer ? fp32_state(t.momentum_buffer) + i : nullptr, s, acc);
      },
      [](MetricSums& acc, const MetricSums& o) { acc.add(o); });
}

}  // namespace

FO_CPU_ALGORITHM(sgd, SgdTensor, SgdSlot)

}  // namespace fo::cpu
