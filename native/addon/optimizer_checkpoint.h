#pragma once
// The checkpoint methods of the optimizer handles (OptimizerWrap forwards to these; the
// engine side is "Checkpoint I/O" in native/core/engine.h). State buffers cross to JavaScript
// as one tensor table per call, and every call covers all params at once, so a model of 100k
// params costs a few calls and a few typed arrays, not 100k objects.
//
// A buffer mask is one byte per param: bit k for state buffer k (Algo::state_name(k)),
// kMasterBit for the fp32 master. Tables list each param's buffers in that order.
#include <napi.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "../core/engine.h"
#include "checkpoint_wrap.h"
#include "js_errors.h"

namespace fo::addon::checkpoint {

constexpr uint8_t kMasterBit = 0x80;

inline std::shared_ptr<Tensor> fp32_tensor(std::shared_ptr<Storage> storage) {
  auto t = std::make_shared<Tensor>();
  t->storage = std::move(storage);
  t->dtype = DType::Float32;
  t->numel = int64_t(t->storage->bytes() / 4);
  return t;
}

inline Napi::Int32Array indices_arg(const Napi::Value& v, int param_count) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw fo::TypeError("param indices must be an Int32Array");
  auto a = v.As<Napi::Int32Array>();
  for (size_t i = 0; i < a.ElementLength(); ++i)
    if (a[i] < 0 || a[i] >= param_count)
      throw fo::RangeError("param index " + std::to_string(a[i]) + " is out of range");
  return a;
}

template <typename A>
A typed_arg(const Napi::Value& v, napi_typedarray_type type, size_t length, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type || v.As<A>().ElementLength() != length)
    throw fo::TypeError(std::string(what) + " must be a typed array with one entry per param index");
  return v.As<A>();
}

// checkpointBufferNames() -> the names of mask bits 0, 1, ...
template <typename Algo>
Napi::Value buffer_names(Napi::Env env) {
  Napi::Array out = Napi::Array::New(env, Algo::kStates);
  for (int k = 0; k < Algo::kStates; ++k) out.Set(uint32_t(k), Napi::String::New(env, Algo::state_name(k)));
  return out;
}

// checkpointStates() -> { steps: Float64Array (-1: no state), masks: Uint8Array, table }:
// every param's buffers as a save writes them (Engine::state_buffers).
template <typename Algo>
Napi::Value states(Napi::Env env, Engine<Algo>& engine) {
  engine.synchronize();  // the buffers are read after the queued steps
  const int n = engine.param_count();
  auto steps = Napi::Float64Array::New(env, size_t(n));
  auto masks = Napi::Uint8Array::New(env, size_t(n));
  std::vector<std::shared_ptr<Tensor>> table;
  for (int i = 0; i < n; ++i) {
    auto b = engine.state_buffers(i);
    steps[size_t(i)] = b.has_state ? double(b.step) : -1.0;
    uint8_t mask = 0;
    if (b.has_state) {
      for (int k = 0; k < Algo::kStates; ++k) {
        if (!b.states[k]) continue;
        mask |= uint8_t(1u << k);
        table.push_back(fp32_tensor(b.states[k]));
      }
      if (b.master) {
        mask |= kMasterBit;
        table.push_back(fp32_tensor(b.master));
      }
    }
    masks[size_t(i)] = mask;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("steps", steps);
  out.Set("masks", masks);
  out.Set("table", tensor_table(env, std::move(table)));
  return out;
}

// checkpointStage(indices: Int32Array, masks: Uint8Array) -> { table, fresh: Uint8Array }:
// the buffers a load reads into (Engine::stage_load), and which were created for it.
template <typename Algo>
Napi::Value stage(const Napi::CallbackInfo& info, Engine<Algo>& engine) {
  Napi::Env env = info.Env();
  auto indices = indices_arg(info[0], engine.param_count());
  auto masks = typed_arg<Napi::Uint8Array>(info[1], napi_uint8_array, indices.ElementLength(), "masks");
  std::vector<std::shared_ptr<Tensor>> table;
  std::vector<uint8_t> fresh;
  for (size_t i = 0; i < indices.ElementLength(); ++i) {
    bool want[Algo::kStates] = {};
    for (int k = 0; k < Algo::kStates; ++k) want[k] = (masks[i] >> k) & 1u;
    auto b = engine.stage_load(indices[i], want, (masks[i] & kMasterBit) != 0, engine.state_format(indices[i]));
    for (int k = 0; k < Algo::kStates; ++k) {
      if (!want[k]) continue;
      table.push_back(fp32_tensor(b.states[k]));
      fresh.push_back(b.fresh[k]);
    }
    if (masks[i] & kMasterBit) {
      table.push_back(fp32_tensor(b.master));
      fresh.push_back(b.fresh_master);
    }
  }
  auto fresh_js = Napi::Uint8Array::New(env, fresh.size());
  for (size_t i = 0; i < fresh.size(); ++i) fresh_js[i] = fresh[i];
  Napi::Object out = Napi::Object::New(env);
  out.Set("table", tensor_table(env, std::move(table)));
  out.Set("fresh", fresh_js);
  return out;
}

// checkpointCommit(indices, steps: Float64Array, flags: Uint8Array): flags bit 0 master
// loaded, bit 1 param loaded (Engine::commit_load). All are checked before any is applied.
template <typename Algo>
void commit(const Napi::CallbackInfo& info, Engine<Algo>& engine) {
  auto indices = indices_arg(info[0], engine.param_count());
  const size_t n = indices.ElementLength();
  auto steps = typed_arg<Napi::Float64Array>(info[1], napi_float64_array, n, "steps");
  auto flags = typed_arg<Napi::Uint8Array>(info[2], napi_uint8_array, n, "flags");
  for (size_t i = 0; i < n; ++i)
    if (!(steps[i] >= 0) || steps[i] > 9007199254740991.0 || steps[i] != std::floor(steps[i]))
      throw fo::RangeError("state.step must be a non-negative integer");
  for (size_t i = 0; i < n; ++i) engine.commit_load(indices[i], int64_t(steps[i]), flags[i] & 1u, flags[i] & 2u);
}

// checkpointAbort(indices) (Engine::abort_load), checkpointReset(indices) (Engine::reset_state).
template <typename Algo>
void abort(const Napi::CallbackInfo& info, Engine<Algo>& engine) {
  auto indices = indices_arg(info[0], engine.param_count());
  for (size_t i = 0; i < indices.ElementLength(); ++i) engine.abort_load(indices[i]);
}

template <typename Algo>
void reset(const Napi::CallbackInfo& info, Engine<Algo>& engine) {
  auto indices = indices_arg(info[0], engine.param_count());
  for (size_t i = 0; i < indices.ElementLength(); ++i) engine.reset_state(indices[i]);
}

}  // namespace fo::addon::checkpoint
