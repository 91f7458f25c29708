#pragma once
// Host-side computation of the per-step Lion scalars, in float64 as the Python original.
#include <math.h>

#include "lion_rule.h"

namespace fo {

struct LionHyper {
  double lr, beta1, beta2, weight_decay, initial_lr;  // initial_lr 0: none recorded
};

inline LionSlot make_lion_slot(const LionHyper& h, double lr_ratio = 1.0, bool apply_decay = true) {
  const double lr = h.lr * lr_ratio;
  LionSlot s;
  // DecoupledLionW: decay scaled by lr / initial_lr, so a schedule lowers it with the lr.
  const double decay_scale = h.initial_lr != 0 ? h.lr / h.initial_lr : 1.0;
  s.decay_factor = (apply_decay && h.weight_decay != 0) ? float(1.0 - decay_scale * h.weight_decay) : 1.0f;
  s.neg_lr = float(-lr);
  s.update_weight = float(1.0 - h.beta1);
  s.moment_weight = float(1.0 - h.beta2);
  s.flags = 0;
  s.grad = GradTransform{1.0f, -INFINITY, INFINITY};
  s.rng_key0 = s.rng_key1 = 0;
  return s;
}

}  // namespace fo
