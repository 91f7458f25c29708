#pragma once
// The SGD update of one element, exactly torch.optim.SGD (_single_tensor_sgd):
//   d = maximize ? -g : g
//   if weight_decay != 0: d = d + weight_decay * p          (coupled L2, d_p.add(p, alpha=wd))
//   if momentum != 0:
//     buf = first step ? d : buf * momentum + (1 - dampening) * d
//     d = nesterov ? d + momentum * buf : buf
//   p = p + (-lr) * d
// written once and called by both backends (separate IEEE fp32 operations in torch's order,
// no FMA contraction). A tensor has a momentum buffer exactly when its group's momentum is
// not 0 (SgdTensor::momentum_buffer), so the buffer never depends on the slot alone.
#include <cstdint>

#include "adamw_rule.h"  // kStochasticRounding
#include "fo_macros.h"
#include "grad_transform.h"
#include "metrics.h"

namespace fo {

enum SgdFlags : uint32_t { kSgdMaximize = 1u, kSgdNesterov = 2u, kSgdFirstStep = 8u };  // 4: kStochasticRounding

struct SgdSlot {
  float neg_lr;        // -lr (times the param's lr ratio)
  float weight_decay;  // 0: no L2 term (also for a param whose decay is switched off)
  float momentum;
  float grad_weight;  // 1 - dampening
  uint32_t flags;     // SgdFlags | kStochasticRounding; kSgdFirstStep: the buffer starts as d
  GradTransform grad;
  uint32_t rng_key0, rng_key1;
};

// The direction the step subtracts (times lr) before momentum: the grad, negated to maximize,
// plus the L2 term.
FO_HD float sgd_direction(float param, float grad, const SgdSlot& s) {
  float d = (s.flags & kSgdMaximize) ? -grad : grad;
  if (s.weight_decay != 0.0f) d = d + s.weight_decay * param;
  return d;
}

// Without momentum: returns the new parameter value.
FO_HD float sgd_update(float param, float grad, const SgdSlot& s) {
  return param + s.neg_lr * sgd_direction(param, grad, s);
}

// With momentum: returns the new parameter value; updates the buffer in place.
FO_HD float sgd_update(float param, float grad, float& buf, const SgdSlot& s) {
  float d = sgd_direction(param, grad, s);
  buf = (s.flags & kSgdFirstStep) ? d : buf * s.momentum + s.grad_weight * d;
  d = (s.flags & kSgdNesterov) ? d + s.momentum * buf : buf;
  return param + s.neg_lr * d;
}

// One element's metrics (metrics.h); the moment is the momentum buffer (0 without one).
FO_HD void sgd_metrics(float param, float grad, const float* buf, const SgdSlot& s, MetricSums& acc) {
  if (!buf) {
    acc.add(0.0f, param, param - sgd_update(param, grad, s), grad);
    return;
  }
  float b = *buf;
  acc.add(*buf, param, param - sgd_update(param, grad, b, s), grad);
}

}  // namespace fo
