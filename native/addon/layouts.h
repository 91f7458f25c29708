#pragma once
// The positional layouts that cross the JS/native boundary, defined in native code and
// exported once as native().layouts: each optimizer's hyperparameter fields (one group's
// numbers in the Float64Array of a step, in order), state buffers and step count; the metrics
// row; the clip-mode, dtype, state dtype and device codes. src/layouts.ts checks them against what the
// TypeScript classes write when the addon is loaded, so a mismatch fails at load, not at a step.
#include <napi.h>

#include <iterator>

#include "../common/dtype.h"
#include "../common/grad_transform.h"
#include "../common/metrics.h"
#include "../common/state_dtype.h"
#include "../core/storage.h"
#include "optimizer_wrap.h"

namespace fo::addon {

template <size_t N>
Napi::Array string_array(Napi::Env env, const char* const (&names)[N]) {
  Napi::Array out = Napi::Array::New(env, N);
  for (size_t i = 0; i < N; ++i) out.Set(uint32_t(i), Napi::String::New(env, names[i]));
  return out;
}

// { hyperFields, stateBuffers, requiredStates, hasStepCount } of one algorithm.
template <typename Algo>
Napi::Object optimizer_layout(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("hyperFields", string_array(env, Algo::kHyperFieldNames));
  Napi::Array states = Napi::Array::New(env), required = Napi::Array::New(env);
  for (int k = 0; k < Algo::kStates; ++k) {
    states.Set(uint32_t(k), Napi::String::New(env, Algo::state_name(k)));
    if (Algo::state_required(k)) required.Set(required.Length(), Napi::String::New(env, Algo::state_name(k)));
  }
  o.Set("stateBuffers", states);
  o.Set("requiredStates", required);
  o.Set("hasStepCount", Napi::Boolean::New(env, Algo::has_step_count()));
  return o;
}

// Registers an algorithm: its handle class (exports[Algo::kHandle]) and its layout.
template <typename Algo>
void register_optimizer(Napi::Env env, Napi::Object exports, Napi::Object layouts) {
  exports.Set(Algo::kHandle, OptimizerWrap<Algo>::define(env, Algo::kHandle));
  layouts.Get("optimizers").As<Napi::Object>().Set(Algo::kHandle, optimizer_layout<Algo>(env));
}

// The layouts every optimizer shares; register_optimizer adds to "optimizers".
inline Napi::Object common_layouts(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("metricsRow", string_array(env, MetricSums::kRow));
  o.Set("clipModes", string_array(env, kClipModeNames));
  o.Set("dtypes", string_array(env, kDTypeNames));
  o.Set("stateDtypes", string_array(env, kStateDTypeNames));
  o.Set("devices", string_array(env, kDeviceNames));
  o.Set("optimizers", Napi::Object::New(env));
  return o;
}

}  // namespace fo::addon
