#pragma once
// Host-side computation of the per-step AdamW scalars, in float64 as torch does in Python.
#include <cmath>
#include <cstdint>
#include "adamw_rule.h"

namespace fo {

struct AdamWHyper {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad, maximize;
};

// step is the count after this step's increment (1 on the first update). lr_ratio scales
// the Adam step only (AdamWDL's layer-wise ratio); the decoupled decay uses the base lr,
// and apply_decay = false switches it off for the tensor.
inline AdamWSlot make_adamw_slot(const AdamWHyper& h, int64_t step, double lr_ratio = 1.0, bool apply_decay = true) {
  double lr = h.lr * lr_ratio;
  double bias_correction1 = 1.0 - std::pow(h.beta1, double(step));
  double bias_correction2 = 1.0 - std::pow(h.beta2, double(step));
  AdamWSlot s;
  s.decay_factor = apply_decay ? float(1.0 - h.lr * h.weight_decay) : 1.0f;
  s.neg_step_size = float(-(lr / bias_correction1));
  s.bias_correction2_sqrt = float(std::sqrt(bias_correction2));
  s.eps = float(h.eps);
  s.beta1 = float(h.beta1);
  s.one_minus_beta1 = float(1.0 - h.beta1);
  s.beta2 = float(h.beta2);
  s.one_minus_beta2 = float(1.0 - h.beta2);
  s.flags = (h.amsgrad ? kAdamWAmsgrad : 0u) | (h.maximize ? kAdamWMaximize : 0u);
  s.grad = GradTransform{1.0f, -INFINITY, INFINITY};
  s.rng_key0 = s.rng_key1 = 0;
  return s;
}

}  // namespace fo
