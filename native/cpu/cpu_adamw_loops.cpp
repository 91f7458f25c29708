// AdamW loops of the CPU backend: the shared rule (native/common/adamw_rule.h) over one
// chunk. Each entry point is compiled for several x86-64 levels (FO_SIMD_CLONES).
#include "cpu_adamw.h"
#include "element_io.h"

namespace fo::cpu {

namespace {

// Flags are template arguments so each loop body is branch-free and vectorizes. For half
// params the fp32 master (when kept) is updated and the param rewritten from it in the same
// pass; without a master the half value itself is the starting point.
template <typename Param, typename Grad, bool Amsgrad, bool Master>
FO_INLINE void update_loop(const AdamWTensor& t, const AdamWSlot& s, int64_t begin, int64_t end) {
  float* __restrict master = t.master;
  float* __restrict m = t.exp_avg;
  float* __restrict v = t.exp_avg_sq;
  float* __restrict vmax = t.max_exp_avg_sq;
  float unused = 0.0f;
  for (int64_t i = begin; i < end; ++i) {
    float& vm = Amsgrad ? vmax[i] : unused;
    const float w = Master ? master[i] : Param::load(t.param, i);
    const float updated = adamw_update(w, Grad::load(t.grad, i), m[i], v[i], vm, s);
    if (Master) master[i] = updated;
    Param::store(t.param, i, updated);
  }
}

template <typename Param, typename Grad>
FO_INLINE void update_chunk(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e) {
  const bool amsgrad = s.flags & kAdamWAmsgrad;
  if (t.master) {
    if (amsgrad) update_loop<Param, Grad, true, true>(t, s, b, e);
    else update_loop<Param, Grad, false, true>(t, s, b, e);
  } else {
    if (amsgrad) update_loop<Param, Grad, true, false>(t, s, b, e);
    else update_loop<Param, Grad, false, false>(t, s, b, e);
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
  FO_SIMD_CLONES void adamw_update_##NAME(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e) {   \
    update_chunk<PARAM, GRAD>(t, s, b, e);                                                                    \
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
