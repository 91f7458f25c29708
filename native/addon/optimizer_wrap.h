#pragma once
// The JavaScript objects behind the TypeScript optimizers (AdamWHandle, LionHandle): one
// template over the algorithm. Argument checks (args.h), conversions and the report of the
// engine's memory to V8; the work is in native/core/engine.h.
#include <napi.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../core/engine.h"
#include "addon.h"
#include "args.h"
#include "optimizer_checkpoint.h"
#include "state_js.h"
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
                                 Base::InstanceMethod("addParams", &OptimizerWrap::add_params),
                                 Base::InstanceMethod("setGrad", &OptimizerWrap::set_grad),
                                 Base::InstanceMethod("setGrads", &OptimizerWrap::set_grads),
                                 Base::InstanceMethod("setSparseGrad", &OptimizerWrap::set_sparse_grad),
                                 Base::InstanceMethod("setLazyMode", &OptimizerWrap::set_lazy_mode),
                                 Base::InstanceMethod("step", &OptimizerWrap::step),
                                 Base::InstanceMethod("stepAsync", &OptimizerWrap::step_async),
                                 Base::InstanceMethod("synchronize", &OptimizerWrap::synchronize),
                                 Base::InstanceMethod("metrics", &OptimizerWrap::metrics),
                                 Base::InstanceMethod("getState", &OptimizerWrap::get_state),
                                 Base::InstanceMethod("setState", &OptimizerWrap::set_state),
                                 Base::InstanceMethod("setStateDtype", &OptimizerWrap::set_state_dtype),
                                 Base::InstanceAccessor("stateBytes", &OptimizerWrap::state_bytes, nullptr),
                                 Base::InstanceAccessor("planUploads", &OptimizerWrap::plan_uploads, nullptr),
                                 Base::InstanceAccessor("brokenReason", &OptimizerWrap::broken_reason, nullptr),
                                 Base::InstanceMethod("waitFor", &OptimizerWrap::wait_for),
                                 Base::InstanceAccessor("cudaStream", &OptimizerWrap::cuda_stream, nullptr),
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
                                 Base::InstanceMethod("dispose", &OptimizerWrap::dispose),
                                 Base::InstanceAccessor("disposed", &OptimizerWrap::disposed, nullptr),
                                 Base::InstanceAccessor("memoryBytes", &OptimizerWrap::memory_bytes, nullptr),
                             });
  }

  explicit OptimizerWrap(const Napi::CallbackInfo& info) : Base(info), memory_(info.Env()) {
    guarded(info.Env(), [&] {
      const auto device = Device(args::code(info[0], "optimizer handle: device code (0 cpu, 1 cuda)", 2));
      engine_ = std::make_shared<EngineT>(device);
      report_memory();
    });
  }

 private:
  // The engine, unless dispose() was called.
  EngineT& engine() const {
    if (engine_->disposed())
      throw std::runtime_error("the optimizer has been disposed (dispose() was called); create a new one");
    return *engine_;
  }

  // Tells V8 how much the engine holds now (state, masters, tables), after every call that
  // may allocate: the garbage collector then weighs a dropped optimizer by its real size.
  void report_memory() { memory_.set(engine_->disposed() ? 0 : engine_->memory_bytes()); }

  // Hyperparameters arrive as one Float64Array, Algo::kHyperFields numbers per group;
  // TypeScript builds it in O(groups) per step.
  static std::vector<typename Algo::Hyper> hyper_arg(const Napi::Value& v) {
    auto a = args::typed_array<double>(v, napi_float64_array, "Float64Array", "hyperparameters");
    if (a.ElementLength() % Algo::kHyperFields != 0) throw fo::RangeError("hyperparameter table has a partial group");
    std::vector<typename Algo::Hyper> groups(a.ElementLength() / Algo::kHyperFields);
    for (size_t g = 0; g < groups.size(); ++g) groups[g] = Algo::parse(a.Data() + g * Algo::kHyperFields);
    return groups;
  }

  static int index_arg(const Napi::Value& v) { return int(args::integer(v, "param index", 0, INT32_MAX)); }

  static std::vector<float> master_from_js(const Napi::Object& o, const char* key, bool required) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) {
      if (required) throw fo::TypeError(std::string("state.") + key + " is missing");
      return {};
    }
    auto a = args::typed_array<float>(v, napi_float32_array, "Float32Array", std::string("state.") + key);
    return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
  }

  // addParams(tensors, group, names, masterWeights, lrRatios?, applyDecay?) -> index of the
  // first: one call per param group (a million tiny params are one crossing, not a million).
  // lrRatios (Float64Array) and applyDecay (Uint8Array) have one entry per param, or are
  // undefined for 1 and true. All or none are added (Engine::add_params).
  Napi::Value add_params(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      if (!info[0].IsArray()) throw fo::TypeError("addParams: tensors must be an array, got " + args::type_of(info[0]));
      if (!info[2].IsArray()) throw fo::TypeError("addParams: names must be an array, got " + args::type_of(info[2]));
      Napi::Array tensors = info[0].As<Napi::Array>();
      Napi::Array names = info[2].As<Napi::Array>();
      const uint32_t n = tensors.Length();
      if (names.Length() != n) throw fo::RangeError("addParams: names and tensors differ in length");
      const int group = int(args::integer(info[1], "param group index", 0, INT32_MAX));
      const bool master_weights = args::boolean(info[3], "masterWeights");
      const double* ratios = nullptr;
      const uint8_t* decay = nullptr;
      StateFormat state;  // addParams(..., stateDtype code?, blockSize?)
      if (!info[6].IsUndefined())
        state.dtype =
            StateDType(args::code(info[6], "addParams: state dtype code (0 float32, 1 bfloat16, 2 uint8)", 3));
      if (!info[7].IsUndefined()) state.block = int32_t(args::integer(info[7], "addParams: block size", 1, 1 << 30));
      if (!info[4].IsUndefined()) {
        auto a = args::typed_array<double>(info[4], napi_float64_array, "Float64Array", "addParams: lrRatios");
        if (a.ElementLength() != n) throw fo::RangeError("addParams: lrRatios must have one entry per param");
        ratios = a.Data();
      }
      if (!info[5].IsUndefined()) {
        auto a = args::typed_array<uint8_t>(info[5], napi_uint8_array, "Uint8Array", "addParams: applyDecay");
        if (a.ElementLength() != n) throw fo::RangeError("addParams: applyDecay must have one entry per param");
        decay = a.Data();
      }
      std::vector<typename EngineT::NewParam> list(n);
      for (uint32_t i = 0; i < n; ++i) {
        Napi::HandleScope scope(info.Env());  // a million params must not mean a million live handles
        Napi::Value name = names.Get(i);
        if (!name.IsString()) throw fo::TypeError("param name must be a string, got " + args::type_of(name));
        list[i].name = name.As<Napi::String>().Utf8Value();
        list[i].data = TensorWrap::unwrap(tensors.Get(i), "param data");
        list[i].options.master_weights = master_weights;
        if (ratios) list[i].options.lr_ratio = ratios[i];
        if (decay) list[i].options.apply_decay = decay[i] != 0;
        list[i].options.state = state;
      }
      const int first = engine().add_params(std::move(list), group);
      report_memory();
      return Napi::Number::New(info.Env(), first);
    });
  }

  // setGrads(first, grads): the grads of params first, first + 1, ... (a Tensor or null each).
  void set_grads(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] {
      const int first = index_arg(info[0]);
      if (!info[1].IsArray()) throw fo::TypeError("setGrads: grads must be an array, got " + args::type_of(info[1]));
      Napi::Array grads = info[1].As<Napi::Array>();
      std::vector<std::shared_ptr<Tensor>> list(grads.Length());
      for (uint32_t i = 0; i < grads.Length(); ++i) {
        Napi::HandleScope scope(info.Env());
        Napi::Value g = grads.Get(i);
        if (!g.IsNull() && !g.IsUndefined()) list[i] = TensorWrap::unwrap(g, "grad");
      }
      EngineT& e = engine();
      if (int64_t(first) + int64_t(list.size()) > e.param_count())
        throw fo::RangeError("setGrads: more grads than params after index " + std::to_string(first));
      for (size_t i = 0; i < list.size(); ++i) e.set_grad(first + int(i), std::move(list[i]));
    });
  }

  void set_grad(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] {
      int index = index_arg(info[0]);
      std::shared_ptr<Tensor> grad;
      if (!info[1].IsNull() && !info[1].IsUndefined()) grad = TensorWrap::unwrap(info[1], "grad");
      engine().set_grad(index, std::move(grad));
    });
  }

  // setSparseGrad(index, values, rows: Int32Array, rowWidth)
  void set_sparse_grad(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] {
      int index = index_arg(info[0]);
      auto values = TensorWrap::unwrap(info[1], "row-sparse grad values");
      auto rows = args::typed_array<int32_t>(info[2], napi_int32_array, "Int32Array", "row-sparse grad rows");
      const int64_t width = args::integer(info[3], "row width", 1);
      std::vector<int32_t> list(rows.Data(), rows.Data() + rows.ElementLength());
      engine().set_sparse_grad(index, std::move(values), list, width);
      report_memory();
    });
  }

  void set_lazy_mode(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] { engine().set_lazy_mode(args::boolean(info[0], "lazy mode")); });
  }

  // The optional second argument of step/stepAsync: { invScale, checkFinite, clip (0 none,
  // 1 global norm, 2 per-tensor norm), maxNorm, clipMin, clipMax, stochasticRounding }.
  static typename EngineT::StepControl control_arg(const Napi::Value& v) {
    typename EngineT::StepControl c;
    const char* what = "step control";
    Napi::Object o = args::options(
        v, {"invScale", "checkFinite", "clip", "maxNorm", "clipMin", "clipMax", "stochasticRounding"}, what);
    c.prepass.inv_scale = float(args::optional_number(o, "invScale", 1.0, what));
    c.prepass.check_finite = args::optional_boolean(o, "checkFinite", false, what);
    Napi::Value clip = o.Get("clip");
    c.prepass.clip = ClipMode(clip.IsUndefined() ? 0 : args::code(clip, "step control.clip", 3));
    c.prepass.max_norm = args::optional_number(o, "maxNorm", 0, what);
    c.clip_lo = float(args::optional_number(o, "clipMin", -INFINITY, what));
    c.clip_hi = float(args::optional_number(o, "clipMax", INFINITY, what));
    c.stochastic_rounding = args::optional_boolean(o, "stochasticRounding", false, what);
    return c;
  }

  // Returns whether the step was skipped (an inf/NaN grad under checkFinite).
  Napi::Value step(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto prepared = engine().prepare(hyper_arg(info[0]), false, control_arg(info[1]));
      report_memory();
      engine_->execute(*prepared);
      engine_->commit(*prepared);  // throws what the launch threw; nothing moved unless it ran
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
    // execute() records its outcome instead of throwing; finish() on the JavaScript thread
    // commits or throws it.
    void Execute() override {
      engine_->execute(*step_);
      if (step_->outcome != EngineT::PreparedStep::Outcome::Queued) return;
      try {
        engine_->synchronize();
      } catch (const std::exception& e) {
        step_->outcome = EngineT::PreparedStep::Outcome::PartlyQueued;  // queued, then the device failed
        step_->error = e.what();
      }
    }
    // On the JavaScript thread once Execute has returned: the pins go first, whatever
    // follows; finish() commits the step or gives the error OnOK rejects with.
    void OnWorkComplete(Napi::Env env, napi_status status) override {
      try {
        engine_->finish(*step_);
      } catch (const std::exception& e) {
        commit_error_ = e.what();
      }
      try {
        Napi::AsyncWorker::OnWorkComplete(env, status);  // OnOK or OnError, then Destroy
      } catch (const Napi::Error&) {
        // The environment is going away (a worker exited with this step in flight, and Node
        // waited for it): there is no JavaScript left to settle the promise for.
        Destroy();
      }
    }
    void OnOK() override {
      Napi::Env env = Napi::AsyncWorker::Env();
      if (commit_error_)
        deferred_.Reject(Napi::Error::New(env, *commit_error_).Value());
      else
        deferred_.Resolve(Napi::Boolean::New(env, step_->skipped));
    }
    void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

   private:
    Napi::Promise::Deferred deferred_;
    std::shared_ptr<EngineT> engine_;
    std::unique_ptr<typename EngineT::PreparedStep> step_;
    std::optional<std::string> commit_error_;
  };

  Napi::Value step_async(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto prepared = engine().prepare(hyper_arg(info[0]), true, control_arg(info[1]));
      report_memory();
      auto* worker = new StepWorker(info.Env(), engine_, std::move(prepared));
      Napi::Promise promise = worker->promise();
      worker->Queue();
      return promise;
    });
  }

  void synchronize(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] { engine().synchronize(); });
  }

  // metrics(hyper) -> Float64Array of one row per param with grad and state (MetricSums::kRow:
  // index, moment_sq, param_sq, update_sq, grad_sq, update_dot_grad, moment_dot_grad).
  Napi::Value metrics(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto sums = engine().metrics(hyper_arg(info[0]));
      report_memory();
      auto out = Napi::Float64Array::New(info.Env(), sums.size() * MetricSums::kRowWidth);
      double* d = out.Data();
      for (const auto& [index, s] : sums) {
        s.to_row(double(index), d);
        d += MetricSums::kRowWidth;
      }
      return out;
    });
  }

  Napi::Value get_state(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      const int index = index_arg(info[0]);
      const bool as_float32 = !info[1].IsUndefined() && args::boolean(info[1], "getState: asFloat32");
      auto st = engine().get_state(index);
      if (!st.has_state) return env.Null();
      return state_to_js<Algo>(env, st, engine().param_numel(index), as_float32);
    });
  }

  void set_state(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] {
      int index = index_arg(info[0]);
      if (!info[1].IsObject()) throw fo::TypeError("state must be an object, got " + args::type_of(info[1]));
      Napi::Object o = info[1].As<Napi::Object>();
      typename EngineT::ParamState st;
      st.step = args::integer(o.Get("step"), "state.step", 0);
      st.has_state = true;
      st.format = state_format_from_js(o);
      auto given = [&](const char* key) { return !o.Get(key).IsUndefined() && !o.Get(key).IsNull(); };
      for (int k = 0; k < Algo::kStates; ++k) {
        const char* name = Algo::state_name(k);
        st.present[k] = given(name);
        if (!st.present[k] && Algo::state_required(k))
          throw fo::TypeError(std::string("state.") + name + " is missing");
        if (st.present[k]) st.states[k] = state_buffer_from_js(o, name, st.format);
      }
      st.master = master_from_js(o, "master", false);
      st.has_master = given("master");
      engine().set_state(index, st);
      report_memory();
    });
  }

  // setStateDtype(index, code, blockSize): the state dtype of a param's group changed (its
  // existing state is converted; Engine::set_state_format).
  void set_state_dtype(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] {
      const int index = index_arg(info[0]);
      StateFormat f;
      f.dtype = StateDType(args::code(info[1], "setStateDtype: state dtype code (0 float32, 1 bfloat16, 2 uint8)", 3));
      f.block = int32_t(args::integer(info[2], "setStateDtype: block size", 1, 1 << 30));
      engine().set_state_format(index, f);
      report_memory();
    });
  }

  Napi::Value state_bytes(const Napi::CallbackInfo& info) {
    return guarded(info.Env(),
                   [&]() -> Napi::Value { return Napi::Number::New(info.Env(), double(engine().state_bytes())); });
  }

  // { seed, counter } of stochastic rounding, as numbers (integers below 2^53).
  Napi::Value get_rng(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("seed", Napi::Number::New(info.Env(), double(engine().rng_seed())));
      o.Set("counter", Napi::Number::New(info.Env(), double(engine().rng_counter())));
      return o;
    });
  }

  void set_rng(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] {
      engine().set_rng(uint64_t(args::integer(info[0], "seed", 0)), uint64_t(args::integer(info[1], "counter", 0)));
    });
  }

  // ---- Checkpoints: optimizer_checkpoint.h.
  void checkpoint_begin(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] { engine().begin_checkpoint_io(); });
  }
  void checkpoint_end(const Napi::CallbackInfo&) { engine_->end_checkpoint_io(); }
  Napi::Value checkpoint_names(const Napi::CallbackInfo& info) { return checkpoint::buffer_names<Algo>(info.Env()); }
  Napi::Value checkpoint_states(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return checkpoint::states(info.Env(), engine()); });
  }
  Napi::Value checkpoint_stage(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] {
      auto staged = checkpoint::stage(info, engine());
      report_memory();
      return staged;
    });
  }
  void checkpoint_commit(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] {
      checkpoint::commit(info, engine());
      report_memory();
    });
  }
  void checkpoint_abort(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] { checkpoint::abort(info, engine()); });
  }
  void checkpoint_reset(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] { checkpoint::reset(info, engine()); });
  }

  // waitFor(event: bigint): later steps wait for a cudaEvent_t of the caller's.
  void wait_for(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] {
      if (!info[0].IsBigInt()) throw fo::TypeError("waitFor: event must be a bigint (a cudaEvent_t)");
      bool lossless = false;
      const uint64_t event = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
      if (!lossless) throw fo::TypeError("waitFor: event must be a non-negative 64-bit address");
      engine().wait_for_event(reinterpret_cast<void*>(uintptr_t(event)));
    });
  }

  Napi::Value cuda_stream(const Napi::CallbackInfo& info) {
    void* s = engine_->cuda_stream();
    if (!s) return info.Env().Null();
    return Napi::BigInt::New(info.Env(), uint64_t(reinterpret_cast<uintptr_t>(s)));
  }

  // Why the optimizer refuses to step (a step failed part way on the GPU), or null.
  Napi::Value broken_reason(const Napi::CallbackInfo& info) {
    const std::string why = engine_->broken_reason();
    return why.empty() ? info.Env().Null() : Napi::String::New(info.Env(), why);
  }

  Napi::Value plan_uploads(const Napi::CallbackInfo& info) {
    return guarded(info.Env(),
                   [&]() -> Napi::Value { return Napi::Number::New(info.Env(), double(engine().plan_uploads())); });
  }

  // Idempotent. A stepAsync() in flight keeps what it uses until it ends (Engine::dispose).
  void dispose(const Napi::CallbackInfo&) {
    engine_->dispose();
    report_memory();
  }

  Napi::Value disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), engine_->disposed()); }

  // What was last reported to V8 (for tests and the memory benchmark).
  Napi::Value memory_bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(memory_.reported()));
  }

  std::shared_ptr<EngineT> engine_;
  ExternalMemory memory_;
};

}  // namespace fo::addon
