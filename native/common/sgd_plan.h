#pragma once
// What a backend needs to update one tensor with SGD (see adamw_plan.h for conventions), and
// the host-side computation of the per-step scalars, in float64 as torch's Python floats.
#include <math.h>

#include <cstdint>

#include "dtype.h"
#include "fo_macros.h"
#include "state_dtype.h"
#include "sgd_rule.h"

namespace fo {

struct SgdTensor {
  void* param;
  const void* grad;
  float* master;          // fp32 master weights of a half param, or null
  void* momentum_buffer;  // null when the group's momentum is 0 (torch keeps none); see AdamWTensor
  int64_t numel;
  int32_t slot;
  DType param_dtype;
  DType grad_dtype;
  uint32_t rng_stream;  // stochastic rounding stream: the param's index in the optimizer
  const int32_t* rows;  // row-sparse grads: see AdamWTensor::rows
  int64_t row_width;
  StateFormat state;
};

// See the AdamWTensor version (adamw_plan.h).
template <class F>
FO_HD void for_each_state(SgdTensor& t, F f) {
  f(0, t.momentum_buffer, true);
}

struct SgdHyper {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
};

// first_step: the momentum buffer has not been written by a step yet (torch's buffer is None).
inline SgdSlot make_sgd_slot(const SgdHyper& h, double lr_ratio, bool apply_decay, bool first_step) {
  SgdSlot s;
  s.neg_lr = float(-(h.lr * lr_ratio));
  s.weight_decay = apply_decay ? float(h.weight_decay) : 0.0f;
  s.momentum = float(h.momentum);
  s.grad_weight = float(1.0 - h.dampening);
  s.flags = (h.maximize ? kSgdMaximize : 0u) | (h.nesterov ? kSgdNesterov : 0u) | (first_step ? kSgdFirstStep : 0u);
  s.grad = GradTransform{1.0f, -INFINITY, INFINITY};
  s.rng_key0 = s.rng_key1 = 0;
  return s;
}

}  // namespace fo
