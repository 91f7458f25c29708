#pragma once
// The Lion update of one element, exactly llm-foundry's DecoupledLionW.lionw:
//   if wd != 0: p *= 1 - (initial_lr ? lr / initial_lr : 1) * wd
//   p -= lr * sign(lerp(m, g, 1 - beta1))        (sign(0) = 0)
//   m  = lerp(m, g, 1 - beta2)
// written once and called by both backends (no FMA contraction, IEEE order as torch).
#include <cstdint>

#include "adamw_rule.h"  // kStochasticRounding
#include "fo_macros.h"
#include "grad_transform.h"

namespace fo {

struct LionSlot {
  float decay_factor;   // 1 - (lr / initial_lr) * wd, or 1 when wd == 0
  float neg_lr;         // -lr
  float update_weight;  // 1 - beta1
  float moment_weight;  // 1 - beta2
  uint32_t flags;       // kStochasticRounding or 0
  GradTransform grad;   // applied to every grad first (transform_grad)
  uint32_t rng_key0, rng_key1;
};

// torch's lerp (ATen/native/Lerp.h): two forms that keep the result exact at both ends.
// Both are computed and one selected, with no control flow, so the CPU loops vectorize
// without masked arithmetic; the values are the same as a branch would give.
FO_HD float torch_lerp(float start, float end, float weight) {
  const float diff = end - start;
  const float low = start + weight * diff;
  const float high = end - diff * (1.0f - weight);
  return (weight < 0.5f && weight > -0.5f) ? low : high;
}

// +1, -1 or 0 (also for -0 and NaN, as torch.sign), as arithmetic rather than branches.
FO_HD float sign_of(float x) { return float(x > 0.0f) - float(x < 0.0f); }

// Returns the new parameter value; updates exp_avg in place.
FO_HD float lion_update(float param, float grad, float& exp_avg, const LionSlot& s) {
  param = param * s.decay_factor;
  const float direction = sign_of(torch_lerp(exp_avg, grad, s.update_weight));
  param = param + s.neg_lr * direction;
  exp_avg = torch_lerp(exp_avg, grad, s.moment_weight);
  return param;
}

}  // namespace fo
