#pragma once
// What happens to a grad before the update rule sees it: GradScaler's unscale, clipping by
// norm (a coefficient per tensor, from the pre-step pass) and clipping by value, in torch's
// order. With no scaler and no clipping every step is an exact no-op (x * 1, no clamp).
#include <math.h>

#include <cstdint>

#include "dtype.h"
#include "fo_macros.h"

namespace fo {

enum class ClipMode : int32_t {
  None = 0,
  GlobalNorm = 1,  // Paddle ClipGradByGlobalNorm: coef = max / max(global_norm, max)
  TensorNorm = 2,  // Paddle ClipGradByNorm: per tensor, coef = norm > max ? max / norm : 1
};
// The modes' names in TypeScript (GradClip's type), by code; exported in native().layouts.
inline constexpr const char* kClipModeNames[] = {"none", "globalNorm", "tensorNorm"};

struct GradTransform {
  float inv_scale;  // 1 / GradScaler scale (1 without a scaler)
  float clip_lo;    // clipping by value: -inf / +inf when off
  float clip_hi;
};

// The optional pass over an optimizer's grads before its step (GradScaler's inf check,
// clipping by norm). Its results (found_inf, a clip coefficient per tensor) stay with the
// backend for the step that follows.
struct GradPrepass {
  float inv_scale = 1.0f;
  bool check_finite = false;
  ClipMode clip = ClipMode::None;
  double max_norm = 0.0;  // float64, as the norms: the coefficient is rounded once
};

// A grad for the standalone grad operations (clipGradNorm, clipGradValue).
struct GradRef {
  void* data;
  int64_t numel;
  DType dtype;
};

// coef: the tensor's clip-by-norm coefficient (1 when not clipping by norm).
FO_HD float transform_grad(float g, float coef, const GradTransform& t) {
  g = g * t.inv_scale;
  g = g * coef;
  // Comparisons rather than fminf/fmaxf, which would turn a NaN grad into a bound.
  return g < t.clip_lo ? t.clip_lo : (g > t.clip_hi ? t.clip_hi : g);
}

// The pre-step pass over the grads: per chunk, in float64, of the unscaled grad g * inv_scale.
struct GradPartial {
  double sum_sq = 0;      // sum of squares (L2 norms)
  int32_t nonfinite = 0;  // count of inf/NaN elements

  FO_HD void add(float unscaled) {
    const double d = unscaled;
    sum_sq += d * d;
    // x - x is NaN exactly when x is inf or NaN, without isfinite's host/device split.
    if (unscaled - unscaled != 0.0f) ++nonfinite;
  }
  FO_HD void add(const GradPartial& o) {
    sum_sq += o.sum_sq;
    nonfinite += o.nonfinite;
  }
};

// The clip-by-norm coefficient of a tensor, from its squared norm and the global one. A
// non-finite norm poisons the step as torch's clip_grad_norm_ (error_if_nonfinite=False) and
// Paddle's clip classes do: an inf norm gives 0 (finite grads become 0, inf ones NaN), a NaN
// norm gives NaN (every grad becomes NaN). `!(norm <= max)` is true for NaN, where
// `norm > max` was false and left the grads unclipped.
FO_HD float clip_coefficient(ClipMode mode, double tensor_sum_sq, double global_sum_sq, double max_norm) {
  if (mode == ClipMode::None) return 1.0f;
  const double norm = sqrt(mode == ClipMode::GlobalNorm ? global_sum_sq : tensor_sum_sq);
  return !(norm <= max_norm) ? float(max_norm / norm) : 1.0f;
}

}  // namespace fo
