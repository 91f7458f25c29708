#pragma once
// gradNormSums / scaleGrads / clampGrads: the native half of clipGradNorm / clipGradValue.
#include <napi.h>

namespace fo::addon {

void register_grad_ops(Napi::Env env, Napi::Object exports);

}  // namespace fo::addon
