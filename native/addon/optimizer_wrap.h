#pragma once
// The JavaScript objects behind the TypeScript optimizers (AdamWHandle, LionHandle): one
// template over the algorithm. Argument checks and conversions only; the work is in
// native/core/engine.h.
#include <napi.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../core/engine.h"
#include "optimizer_checkpoint.h"
#include "js_errors.h"
#include "tensor_wrap.h"

namespace fo::addon {

template <typename Algo>
class OptimizerWrap : public Napi::ObjectWrap<OptimizerWrap<Algo>> {
 public:
  using EngineT = Engine<Algo>;
  using Base = Napi::ObjectWrap<OptimizerWrap<Algo>>;

  static Napi::Function define(Napi::Env env, const char* name) {
    return Base::DefineClass(env, name,
                             {
                                 Base::InstanceMethod("addParam", &OptimizerWrap::add_param),
                                 Base::InstanceMethod("setGrad", &OptimizerWrap::set_grad),
                                 Base::InstanceMethod("setSparseGrad", &OptimizerWrap::set_sparse_grad),
                                 Base::InstanceMethod("setLazyMode", &OptimizerWrap::set_lazy_mode),
                                 Base::InstanceMethod("step", &OptimizerWrap::step),
                                 Base::InstanceMethod("stepAsync", &OptimizerWrap::step_async),
                                 Base::InstanceMethod("synchronize", &OptimizerWrap::synchronize),
                                 Base::InstanceMethod("metrics", &OptimizerWrap::metrics),
                                 Base::InstanceMethod("getState", &OptimizerWrap::get_state),
                                 Base::InstanceMethod("setState", &OptimizerWrap::set_state),
                                 Base::InstanceAccessor("planUploads", &OptimizerWrap::plan_uploads, nullptr),
                                 Base::InstanceMethod("getRng", &OptimizerWrap::get_rng),
                                 Base::InstanceMethod("setRng", &OptimizerWrap::set_rng),
                                 Base::InstanceMethod("checkpointBegin", &OptimizerWrap::checkpoint_begin),
                                 Base::InstanceMethod("checkpointEnd", &OptimizerWrap::checkpoint_end),
                                 Base::InstanceMethod("checkpointBufferNames", &OptimizerWrap::checkpoint_names),
                                 Base::InstanceMethod("checkpointStates", &OptimizerWrap::checkpoint_states),
                                 Base::InstanceMethod("checkpointStage", &OptimizerWrap::checkpoint_stage),
                                 Base::InstanceMethod("checkpointCommit", &OptimizerWrap::checkpoint_commit),
                                 Base::InstanceMethod("checkpointAbort", &OptimizerWrap::checkpoint_abort),
                                 Base::InstanceMethod("checkpointReset", &OptimizerWrap::checkpoint_reset),
                             });
  }

  explicit OptimizerWrap(const Napi::CallbackInfo& info) : Base(info) {
    guarded(info.Env(), [&] {
      if (!info[0].IsNumber()) throw fo::TypeError("optimizer handle: device must be a number");
      int d = info[0].As<Napi::Number>().Int32Value();
      if (d != 0 && d != 1) throw fo::TypeError("optimizer handle: device must be 0 (cpu) or 1 (cuda)");
      engine_ = std::make_shared<EngineT>(Device(d));
    });
  }

 private:
  // Hyperparameters arrive as one Float64Array, Algo::kHyperFields numbers per group;
  // TypeScript builds it in O(groups) per step.
  static std::vector<typename Algo::Hyper> hyper_arg(const Napi::Value& v) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
      throw fo::TypeError("hyperparameters must be a Float64Array");
    auto a = v.As<Napi::Float64Array>();
    if (a.ElementLength() % Algo::kHyperFields != 0) throw fo::RangeError("hyperparameter table has a partial group");
    std::vector<typename Algo::Hyper> groups(a.ElementLength() / Algo::kHyperFields);
    for (size_t g = 0; g < groups.size(); ++g) groups[g] = Algo::parse(a.Data() + g * Algo::kHyperFields);
    return groups;
  }

  static int index_arg(const Napi::Value& v) {
    if (!v.IsNumber()) throw fo::TypeError("param index must be a number");
    return v.As<Napi::Number>().Int32Value();
  }

  static Napi::Float32Array to_js(Napi::Env env, const std::vector<float>& v) {
    auto out = Napi::Float32Array::New(env, v.size());
    if (!v.empty()) std::memcpy(out.Data(), v.data(), v.size() * 4);
    return out;
  }

  static std::vector<float> from_js(const Napi::Object& o, const char* key, bool required) {
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

  // addParam(tensor, group, name, { masterWeights?, lrRatio?, applyDecay? })
  Napi::Value add_param(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto tensor = TensorWrap::unwrap(info[0], "param data");
      int group = index_arg(info[1]);
      std::string name = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : std::string("?");
      typename EngineT::ParamOptions options;
      if (info[3].IsObject()) {
        Napi::Object o = info[3].As<Napi::Object>();
        if (o.Get("masterWeights").IsBoolean()) options.master_weights = o.Get("masterWeights").As<Napi::Boolean>();
        if (o.Get("applyDecay").IsBoolean()) options.apply_decay = o.Get("applyDecay").As<Napi::Boolean>();
        if (o.Get("lrRatio").IsNumber()) options.lr_ratio = o.Get("lrRatio").As<Napi::Number>().DoubleValue();
      }
      return Napi::Number::New(info.Env(), engine_->add_param(std::move(tensor), group, std::move(name), options));
    });
  }

  void set_grad(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] {
      int index = index_arg(info[0]);
      std::shared_ptr<Tensor> grad;
      if (!info[1].IsNull() && !info[1].IsUndefined()) grad = TensorWrap::unwrap(info[1], "grad");
      engine_->set_grad(index, std::move(grad));
    });
  }

  // setSparseGrad(index, values, rows: Int32Array, rowWidth)
  void set_sparse_grad(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] {
      int index = index_arg(info[0]);
      auto values = TensorWrap::unwrap(info[1], "row-sparse grad values");
      if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
        throw fo::TypeError("row-sparse grad rows must be an Int32Array");
      auto rows = info[2].As<Napi::Int32Array>();
      if (!info[3].IsNumber()) throw fo::TypeError("row width must be a number");
      const double width = info[3].As<Napi::Number>().DoubleValue();
      if (!(width >= 1) || width != std::floor(width) || width > 9007199254740991.0)
        throw fo::RangeError("row width must be a positive integer");
      std::vector<int32_t> list(rows.Data(), rows.Data() + rows.ElementLength());
      engine_->set_sparse_grad(index, std::move(values), list, int64_t(width));
    });
  }

  void set_lazy_mode(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] { engine_->set_lazy_mode(info[0].ToBoolean()); });
  }

  // The optional second argument of step/stepAsync: { invScale, checkFinite, clip (0 none,
  // 1 global norm, 2 per-tensor norm), maxNorm, clipMin, clipMax, stochasticRounding }.
  static typename EngineT::StepControl control_arg(const Napi::Value& v) {
    typename EngineT::StepControl c;
    if (v.IsUndefined() || v.IsNull()) return c;
    if (!v.IsObject()) throw fo::TypeError("step control must be an object");
    Napi::Object o = v.As<Napi::Object>();
    auto number = [&](const char* key, double fallback) {
      Napi::Value x = o.Get(key);
      if (x.IsUndefined()) return fallback;
      if (!x.IsNumber()) throw fo::TypeError(std::string("step control: ") + key + " must be a number");
      return x.As<Napi::Number>().DoubleValue();
    };
    c.prepass.inv_scale = float(number("invScale", 1.0));
    c.prepass.check_finite = o.Get("checkFinite").ToBoolean();
    c.prepass.clip = ClipMode(int32_t(number("clip", 0)));
    c.prepass.max_norm = number("maxNorm", 0);
    c.clip_lo = float(number("clipMin", -INFINITY));
    c.clip_hi = float(number("clipMax", INFINITY));
    c.stochastic_rounding = o.Get("stochasticRounding").ToBoolean();
    return c;
  }

  // Returns whether the step was skipped (an inf/NaN grad under checkFinite).
  Napi::Value step(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto prepared = engine_->prepare(hyper_arg(info[0]), false, control_arg(info[1]));
      engine_->execute(*prepared);
      return Napi::Boolean::New(info.Env(), prepared->skipped);
    });
  }

  // Runs a prepared step off the JavaScript thread and resolves a promise when it is done.
  class StepWorker : public Napi::AsyncWorker {
   public:
    StepWorker(Napi::Env env, std::shared_ptr<EngineT> engine, std::unique_ptr<typename EngineT::PreparedStep> step)
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
        Napi::AsyncWorker::SetError(e.what());
      }
    }
    void OnOK() override {
      engine_->finish(*step_);
      deferred_.Resolve(Napi::Boolean::New(Napi::AsyncWorker::Env(), step_->skipped));
    }
    void OnError(const Napi::Error& e) override {
      engine_->finish(*step_);
      deferred_.Reject(e.Value());
    }

   private:
    Napi::Promise::Deferred deferred_;
    std::shared_ptr<EngineT> engine_;
    std::unique_ptr<typename EngineT::PreparedStep> step_;
  };

  Napi::Value step_async(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto prepared = engine_->prepare(hyper_arg(info[0]), true, control_arg(info[1]));
      auto* worker = new StepWorker(info.Env(), engine_, std::move(prepared));
      Napi::Promise promise = worker->promise();
      worker->Queue();
      return promise;
    });
  }

  void synchronize(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] { engine_->synchronize(); });
  }

  // metrics(hyper) -> Float64Array of 7 numbers per param with grad and state:
  // index, moment_sq, param_sq, update_sq, grad_sq, update_dot_grad, moment_dot_grad.
  Napi::Value metrics(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto sums = engine_->metrics(hyper_arg(info[0]));
      auto out = Napi::Float64Array::New(info.Env(), sums.size() * 7);
      double* d = out.Data();
      for (const auto& [index, s] : sums) {
        const double row[7] = {double(index), s.moment_sq,       s.param_sq,       s.update_sq,
                               s.grad_sq,     s.update_dot_grad, s.moment_dot_grad};
        std::memcpy(d, row, sizeof row);
        d += 7;
      }
      return out;
    });
  }

  Napi::Value get_state(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      auto st = engine_->get_state(index_arg(info[0]));
      if (!st.has_state) return env.Null();
      Napi::Object o = Napi::Object::New(env);
      o.Set("step", Napi::Number::New(env, double(st.step)));
      for (int k = 0; k < Algo::kStates; ++k)
        if (st.present[k]) o.Set(Algo::state_name(k), to_js(env, st.states[k]));
      if (st.has_master) o.Set("master", to_js(env, st.master));
      return o;
    });
  }

  void set_state(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] {
      int index = index_arg(info[0]);
      if (!info[1].IsObject()) throw fo::TypeError("state must be an object");
      Napi::Object o = info[1].As<Napi::Object>();
      typename EngineT::ParamState st;
      Napi::Value step = o.Get("step");
      if (!step.IsNumber()) throw fo::TypeError("state.step must be a number");
      double s = step.As<Napi::Number>().DoubleValue();
      if (!(s >= 0) || s > 9007199254740991.0 || s != std::floor(s))
        throw fo::RangeError("state.step must be a non-negative integer");
      st.step = int64_t(s);
      st.has_state = true;
      auto given = [&](const char* key) { return !o.Get(key).IsUndefined() && !o.Get(key).IsNull(); };
      for (int k = 0; k < Algo::kStates; ++k) {
        st.states[k] = from_js(o, Algo::state_name(k), Algo::state_required(k));
        st.present[k] = given(Algo::state_name(k));
      }
      st.master = from_js(o, "master", false);
      st.has_master = given("master");
      engine_->set_state(index, st);
    });
  }

  // { seed, counter } of stochastic rounding, as numbers (integers below 2^53).
  Napi::Value get_rng(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("seed", Napi::Number::New(info.Env(), double(engine_->rng_seed())));
    o.Set("counter", Napi::Number::New(info.Env(), double(engine_->rng_counter())));
    return o;
  }

  void set_rng(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] {
      auto integer = [](const Napi::Value& v, const char* what) {
        if (!v.IsNumber()) throw fo::TypeError(std::string(what) + " must be a number");
        const double d = v.As<Napi::Number>().DoubleValue();
        if (!(d >= 0) || d > 9007199254740991.0 || d != std::floor(d))
          throw fo::RangeError(std::string(what) + " must be an integer from 0 to 2^53 - 1");
        return uint64_t(d);
      };
      engine_->set_rng(integer(info[0], "seed"), integer(info[1], "counter"));
    });
  }

  // ---- Checkpoints: optimizer_checkpoint.h.
  void checkpoint_begin(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] { engine_->begin_checkpoint_io(); });
  }
  void checkpoint_end(const Napi::CallbackInfo&) { engine_->end_checkpoint_io(); }
  Napi::Value checkpoint_names(const Napi::CallbackInfo& info) { return checkpoint::buffer_names<Algo>(info.Env()); }
  Napi::Value checkpoint_states(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return checkpoint::states(info.Env(), *engine_); });
  }
  Napi::Value checkpoint_stage(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return checkpoint::stage(info, *engine_); });
  }
  void checkpoint_commit(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] { checkpoint::commit(info, *engine_); });
  }
  void checkpoint_abort(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] { checkpoint::abort(info, *engine_); });
  }
  void checkpoint_reset(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] { checkpoint::reset(info, *engine_); });
  }

  Napi::Value plan_uploads(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(engine_->plan_uploads()));
  }

  std::shared_ptr<EngineT> engine_;
};

}  // namespace fo::addon
