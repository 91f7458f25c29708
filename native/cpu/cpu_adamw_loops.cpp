// AdamW loops of the CPU backend: the shared rule (native/common/adamw_rule.h) over one
// chunk. Each entry point is compiled for several x86-64 levels (FO_SIMD_CLONES).
#include <type_traits>

#include "cpu_adamw.h"
#include "element_io.h"

namespace fo::cpu {

namespace {

// Flags are template arguments so each loop body is branch-free and vectorizes. For half
// params the fp32 master (when kept) is updated and the param rewritten from it in the same
// pass; without a master the half value itself is the starting point.
// i walks the grad; j is the param/state element it updates (the same for dense grads).
template <typename Param, typename Grad, bool Amsgrad, bool Master, bool Stochastic, bool Sparse>
FO_INLINE void update_loop(const AdamWTensor& t, const AdamWSlot& s, int64_t begin, int64_t end, float coef) {
  float* __restrict master = t.master;
  float* __restrict m = t.exp_avg;
  float* __restrict v = t.exp_avg_sq;
  float* __restrict vmax = t.max_exp_avg_sq;
  const uint32_t key = Stochastic ? rounding_stream_key(s.rng_key0, s.rng_key1, t.rng_stream) : 0;
  float unused = 0.0f;
  for (int64_t i = begin; i < end; ++i) {
    const int64_t j = Sparse ? sparse_state_index(t.rows, t.row_width, i) : i;
    float& vm = Amsgrad ? vmax[j] : unused;
    const float w = Master ? master[j] : Param::load(t.param, j);
    const float g = transform_grad(Grad::load(t.grad, i), coef, s.grad);
    const float updated = adamw_update(w, g, m[j], v[j], vm, s);
    if (Master) master[j] = updated;
    store_param<Param, Stochastic>(t.param, j, updated, key);
  }
}

// Flags become template arguments here, once per chunk.
template <typename Param, typename Grad, bool Master, bool Stochastic>
FO_INLINE void update_amsgrad(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e, float coef) {
  const bool amsgrad = s.flags & kAdamWAmsgrad;
  if (t.rows) {
    if (amsgrad) update_loop<Param, Grad, true, Master, Stochastic, true>(t, s, b, e, coef);
    else update_loop<Param, Grad, false, Master, Stochastic, true>(t, s, b, e, coef);
  } else {
    if (amsgrad) update_loop<Param, Grad, true, Master, Stochastic, false>(t, s, b, e, coef);
    else update_loop<Param, Grad, false, Master, Stochastic, false>(t, s, b, e, coef);
  }
}

template <typename Param, typename Grad>
FO_INLINE void update_chunk(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e, float coef) {
  if constexpr (std::is_same_v<Param, F32>) {
    update_amsgrad<Param, Grad, false, false>(t, s, b, e, coef);
  } else {
    const bool stochastic = std::is_same_v<Param, BF16> && (s.flags & kStochasticRounding);
    if (t.master) {
      if (stochastic) update_amsgrad<Param, Grad, true, true>(t, s, b, e, coef);
      else update_amsgrad<Param, Grad, true, false>(t, s, b, e, coef);
    } else {
      if (stochastic) update_amsgrad<Param, Grad, false, true>(t, s, b, e, coef);
      else update_amsgrad<Param, Grad, false, false>(t, s, b, e, coef);
    }
  }
}

template <typename Param, typename Grad>
FO_INLINE void metrics_chunk(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e, MetricSums* out) {
  const bool amsgrad = s.flags & kAdamWAmsgrad;
  MetricSums acc;
  for (int64_t i = b; i < e; ++i) {
    const float w = t.master ? t.master[i] : Param::load(t.param, i);
    adamw_metrics(w, Grad::load(t.grad, i), t.exp_avg[i], t.exp_avg_sq[i], amsgrad ? t.max_exp_avg_sq[i] : 0.0f, s,
                  acc);
  }
  *out = acc;
}

}  // namespace

#define FO_ADAMW_ENTRY_POINTS(NAME, PARAM, GRAD)                                                             \
  FO_SIMD_CLONES void adamw_update_##NAME(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e,     \
                                          float coef) {                                                       \
    update_chunk<PARAM, GRAD>(t, s, b, e, coef);                                                              \
  }                                                                                                           \
  FO_SIMD_CLONES void adamw_metrics_##NAME(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e,    \
                                           MetricSums* out) {                                                 \
    metrics_chunk<PARAM, GRAD>(t, s, b, e, out);                                                              \
  }

FO_ADAMW_ENTRY_POINTS(f32_f32, F32, F32)
FO_ADAMW_ENTRY_POINTS(f16_f16, F16, F16)
FO_ADAMW_ENTRY_POINTS(f16_f32, F16, F32)
FO_ADAMW_ENTRY_POINTS(bf16_bf16, BF16, BF16)
FO_ADAMW_ENTRY_POINTS(bf16_f32, BF16, F32)

AdamWKernels::UpdateFn AdamWKernels::update_fn(DType param, DType grad) {
  if (param == DType::Float32) return adamw_update_f32_f32;
  if (param == DType::Float16) return grad == DType::Float32 ? adamw_update_f16_f32 : adamw_update_f16_f16;
  return grad == DType::Float32 ? adamw_update_bf16_f32 : adamw_update_bf16_bf16;
}

AdamWKernels::MetricsFn AdamWKernels::metrics_fn(DType param, DType grad) {
  if (param == DType::Float32) return adamw_metrics_f32_f32;
  if (param == DType::Float16) return grad == DType::Float32 ? adamw_metrics_f16_f32 : adamw_metrics_f16_f16;
  return grad == DType::Float32 ? adamw_metrics_bf16_f32 : adamw_metrics_bf16_bf16;
}

}  // namespace fo::cpu
