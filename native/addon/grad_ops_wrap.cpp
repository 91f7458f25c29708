#include "grad_ops_wrap.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../core/grad_ops.h"
#include "args.h"
#include "js_errors.h"
#include "tensor_wrap.h"

namespace fo::addon {

namespace {

std::vector<std::shared_ptr<Tensor>> tensors_arg(const Napi::Value& v) {
  if (!v.IsArray()) throw fo::TypeError("grads must be an array of Tensors");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::shared_ptr<Tensor>> out;
  for (uint32_t i = 0; i < a.Length(); ++i)
    out.push_back(TensorWrap::unwrap(a.Get(i), ("grads[" + std::to_string(i) + "]").c_str()));
  return out;
}

Napi::Value grad_norm_sums_js(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    std::vector<double> sums = grad_norm_sums(tensors_arg(info[0]), args::number(info[1], "normType"));
    auto out = Napi::Float64Array::New(info.Env(), sums.size());
    if (!sums.empty()) std::memcpy(out.Data(), sums.data(), sums.size() * sizeof(double));
    return out;
  });
}

void scale_grads_js(const Napi::CallbackInfo& info) {
  guarded(info.Env(), [&] { scale_grads(tensors_arg(info[0]), float(args::number(info[1], "coef"))); });
}

void clamp_grads_js(const Napi::CallbackInfo& info) {
  guarded(info.Env(), [&] {
    clamp_grads(tensors_arg(info[0]), float(args::number(info[1], "min")), float(args::number(info[2], "max")));
  });
}

}  // namespace

void register_grad_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("gradNormSums", Napi::Function::New(env, grad_norm_sums_js));
  exports.Set("scaleGrads", Napi::Function::New(env, scale_grads_js));
  exports.Set("clampGrads", Napi::Function::New(env, clamp_grads_js));
}

}  // namespace fo::addon
