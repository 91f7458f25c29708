#pragma once
// What a backend needs to update one tensor with Lion (see adamw_plan.h for conventions).
#include <cstdint>

#include "dtype.h"
#include "fo_macros.h"
#include "state_dtype.h"

namespace fo {

struct LionTensor {
  void* param;
  const void* grad;
  float* master;  // fp32 master weights of a half param, or null
  void* exp_avg;  // encoded as `state` says (see AdamWTensor)
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
FO_HD void for_each_state(LionTensor& t, F f) {
  f(0, t.exp_avg, true);
}

}  // namespace fo
