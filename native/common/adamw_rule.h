#pragma once
// The AdamW update of one element, exactly torch.optim.AdamW (_single_tensor_adamw), written
// once and called by both backends. Every operation is a separate IEEE fp32 operation in
// torch's order; both backends compile it without FMA contraction, so the CPU backend is
// the bit-exact specification of the CUDA one.
#include <math.h>
#include <cstdint>
#include "fo_macros.h"
#include "grad_transform.h"

namespace fo {

enum AdamWFlags : uint32_t { kAdamWAmsgrad = 1u, kAdamWMaximize = 2u, kStochasticRounding = 4u };

// Per-step scalars shared by every tensor of one (param group, step count) class.
// Computed on the host in float64 (adamw_scalars.h) and rounded to fp32 once, as torch
// does when it passes Python floats to its fp32 tensor ops.
struct AdamWSlot {
  float decay_factor;           // 1 - lr * weight_decay
  float neg_step_size;          // -(lr / (1 - beta1^step))
  float bias_correction2_sqrt;  // sqrt(1 - beta2^step)
  float eps;
  float beta1;
  float one_minus_beta1;
  float beta2;
  float one_minus_beta2;
  uint32_t flags;               // AdamWFlags
  GradTransform grad;           // applied to every grad first (transform_grad)
  uint32_t rng_key0, rng_key1;  // stochastic rounding: (seed, step counter) of this step
};

// Returns the new parameter value; updates the moments in place.
// max_exp_avg_sq is only read or written when the slot has kAdamWAmsgrad.
FO_HD float adamw_update(float param, float grad, float& exp_avg, float& exp_avg_sq, float& max_exp_avg_sq,
                         const AdamWSlot& s) {
  if (s.flags & kAdamWMaximize) grad = -grad;
  param = param * s.decay_factor;
  // exp_avg.mul_(beta1).add_(grad, alpha=1-beta1): lerp(m, g, 1-b1) in the form
  // torch 1.13 and torch's fused kernels evaluate, rounded after every operation.
  exp_avg = exp_avg * s.beta1 + s.one_minus_beta1 * grad;
  exp_avg_sq = exp_avg_sq * s.beta2 + (s.one_minus_beta2 * grad) * grad;
  float second_moment = exp_avg_sq;
  if (s.flags & kAdamWAmsgrad) {
    // torch.maximum propagates NaN; fmaxf would drop it.
    float mx = max_exp_avg_sq;
    max_exp_avg_sq = (mx != mx || mx > exp_avg_sq) ? mx : exp_avg_sq;
    second_moment = max_exp_avg_sq;
  }
  float denom = sqrtf(second_moment) / s.bias_correction2_sqrt + s.eps;
  return param + (s.neg_step_size * exp_avg) / denom;
}

}  // namespace fo
