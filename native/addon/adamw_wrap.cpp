#include "adamw_wrap.h"

#include <cstring>
#include <string>
#include <vector>

#include "js_errors.h"
#include "tensor_wrap.h"

namespace fo::addon {

namespace {

// Hyperparameters arrive as one Float64Array, kHyperFields numbers per group, in this
// order; TypeScript builds it in O(groups) per step.
constexpr size_t kHyperFields = 7;  // lr, beta1, beta2, eps, weight_decay, amsgrad, maximize

std::vector<AdamWHyper> hyper_arg(const Napi::Value& v) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw fo::TypeError("step: hyperparameters must be a Float64Array");
  auto a = v.As<Napi::Float64Array>();
  if (a.ElementLength() % kHyperFields != 0)
    throw fo::RangeError("step: hyperparameter table has a partial group");
  std::vector<AdamWHyper> groups(a.ElementLength() / kHyperFields);
  for (size_t g = 0; g < groups.size(); ++g) {
    const double* f = a.Data() + g * kHyperFields;
    groups[g] = AdamWHyper{f[0], f[1], f[2], f[3], f[4], f[5] != 0, f[6] != 0};
  }
  return groups;
}

int index_arg(const Napi::Value& v) {
  if (!v.IsNumber()) throw fo::TypeError("param index must be a number");
  return v.As<Napi::Number>().Int32Value();
}

Napi::Float32Array to_js(Napi::Env env, const std::vector<float>& v) {
  auto out = Napi::Float32Array::New(env, v.size());
  if (!v.empty()) std::memcpy(out.Data(), v.data(), v.size() * 4);
  return out;
}

std::vector<float> from_js(const Napi::Object& o, const char* key, bool required) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throw fo::TypeError(std::string("state.") + key + " is missing");
    return {};
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw fo::TypeError(std::string("state.") + key + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

// Runs a prepared step off the JavaScript thread and resolves a promise when it is done.
class StepWorker : public Napi::AsyncWorker {
 public:
  StepWorker(Napi::Env env, std::shared_ptr<AdamWEngine> engine,
             std::unique_ptr<AdamWEngine::PreparedStep> step)
      : Napi::AsyncWorker(env, "fused-optim:step"),
        deferred_(Napi::Promise::Deferred::New(env)),
        engine_(std::move(engine)),
        step_(std::move(step)) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      engine_->execute(*step_);
      engine_->synchronize();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    engine_->finish(*step_);
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& e) override {
    engine_->finish(*step_);
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<AdamWEngine> engine_;
  std::unique_ptr<AdamWEngine::PreparedStep> step_;
};

}  // namespace

Napi::Function AdamWWrap::define(Napi::Env env) {
  return DefineClass(env, "AdamWHandle",
                     {
                         InstanceMethod("addParam", &AdamWWrap::add_param),
                         InstanceMethod("setGrad", &AdamWWrap::set_grad),
                         InstanceMethod("step", &AdamWWrap::step),
                         InstanceMethod("stepAsync", &AdamWWrap::step_async),
                         InstanceMethod("synchronize", &AdamWWrap::synchronize),
                         InstanceMethod("getState", &AdamWWrap::get_state),
                         InstanceMethod("setState", &AdamWWrap::set_state),
                     });
}

AdamWWrap::AdamWWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AdamWWrap>(info) {
  guarded(info.Env(), [&] {
    if (!info[0].IsNumber()) throw fo::TypeError("AdamWHandle: device must be a number");
    int d = info[0].As<Napi::Number>().Int32Value();
    if (d != 0 && d != 1) throw fo::TypeError("AdamWHandle: device must be 0 (cpu) or 1 (cuda)");
    engine_ = std::make_shared<AdamWEngine>(Device(d));
  });
}

Napi::Value AdamWWrap::add_param(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto tensor = TensorWrap::unwrap(info[0], "param data");
    int group = index_arg(info[1]);
    std::string name = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : std::string("?");
    bool master_weights = info[3].IsBoolean() ? info[3].As<Napi::Boolean>().Value() : true;
    return Napi::Number::New(info.Env(),
                             engine_->add_param(std::move(tensor), group, std::move(name), master_weights));
  });
}

void AdamWWrap::set_grad(const Napi::CallbackInfo& info) {
  guarded(info.Env(), [&] {
    int index = index_arg(info[0]);
    std::shared_ptr<Tensor> grad;
    if (!info[1].IsNull() && !info[1].IsUndefined()) grad = TensorWrap::unwrap(info[1], "grad");
    engine_->set_grad(index, std::move(grad));
  });
}

void AdamWWrap::step(const Napi::CallbackInfo& info) {
  guarded(info.Env(), [&] {
    auto prepared = engine_->prepare(hyper_arg(info[0]), false);
    engine_->execute(*prepared);
  });
}

Napi::Value AdamWWrap::step_async(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto prepared = engine_->prepare(hyper_arg(info[0]), true);
    auto* worker = new StepWorker(info.Env(), engine_, std::move(prepared));
    Napi::Promise promise = worker->promise();
    worker->Queue();
    return promise;
  });
}

void AdamWWrap::synchronize(const Napi::CallbackInfo& info) {
  guarded(info.Env(), [&] { engine_->synchronize(); });
}

Napi::Value AdamWWrap::get_state(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    AdamWEngine::ParamState st = engine_->get_state(index_arg(info[0]));
    if (!st.has_state) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    o.Set("step", Napi::Number::New(env, double(st.step)));
    o.Set("exp_avg", to_js(env, st.exp_avg));
    o.Set("exp_avg_sq", to_js(env, st.exp_avg_sq));
    if (!st.max_exp_avg_sq.empty()) o.Set("max_exp_avg_sq", to_js(env, st.max_exp_avg_sq));
    if (!st.master.empty()) o.Set("master", to_js(env, st.master));
    return o;
  });
}

void AdamWWrap::set_state(const Napi::CallbackInfo& info) {
  guarded(info.Env(), [&] {
    int index = index_arg(info[0]);
    if (!info[1].IsObject()) throw fo::TypeError("state must be an object");
    Napi::Object o = info[1].As<Napi::Object>();
    AdamWEngine::ParamState st;
    Napi::Value step = o.Get("step");
    if (!step.IsNumber()) throw fo::TypeError("state.step must be a number");
    double s = step.As<Napi::Number>().DoubleValue();
    if (!(s >= 0) || s != double(int64_t(s))) throw fo::RangeError("state.step must be a non-negative integer");
    st.step = int64_t(s);
    st.has_state = true;
    st.exp_avg = from_js(o, "exp_avg", true);
    st.exp_avg_sq = from_js(o, "exp_avg_sq", true);
    st.max_exp_avg_sq = from_js(o, "max_exp_avg_sq", false);
    st.master = from_js(o, "master", false);
    engine_->set_state(index, st);
  });
}

}  // namespace fo::addon
