#pragma once
// The checkpoint methods of the optimizer handles (OptimizerWrap forwards to these; the
// engine side is "Checkpoint I/O" in native/core/engine.h). State buffers cross to JavaScript
// as one tensor table per call, and every call covers all params at once, so a model of 100k
// params costs a few calls and a few typed arrays, not 100k objects.
//
// A buffer mask is one byte per param: bit k for state buffer k (Algo::state_name(k)),
// kMasterBit for the fp32 master. Tables list each param's buffers in that order, each as
// its format stores it (state_entries): one entry for a float32 or bfloat16 buffer, two for
// an 8-bit one (its codes, then its absmax values; both parts of one storage).
#include <napi.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "../common/state_dtype.h"
#include "../core/engine.h"
#include "checkpoint_wrap.h"
#include "js_errors.h"

namespace fo::addon::checkpoint {

constexpr uint8_t kMasterBit = 0x80;

// The table entries of one state buffer of n elements in format f (state_dtype.h's layout).
inline void state_entries(std::vector<TableEntry>& table, const std::shared_ptr<Storage>& s, const StateFormat& f,
                          int64_t n) {
  const size_t count = size_t(n);
  switch (f.dtype) {
    case StateDType::Float32:
      table.push_back({s, 0, 4 * count, true});
      return;
    case StateDType::BFloat16:
      table.push_back({s, 0, 2 * count, false});
      return;
    case StateDType::Uint8:
      table.push_back({s, 0, count, false});
      table.push_back({s, size_t(absmax_offset(n)), 4 * size_t(quant_blocks(n, f.block)), true});
      return;
  }
}

inline TableEntry master_entry(const std::shared_ptr<Storage>& s, int64_t n) { return {s, 0, 4 * size_t(n), true}; }

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

// checkpointStates() -> { steps: Float64Array (-1: no state), masks: Uint8Array,
// stateDtypes: Uint8Array (StateDType codes), blockSizes: Int32Array, table }: every param's
// buffers as a save writes them (Engine::state_buffers), in their own format.
template <typename Algo>
Napi::Value states(Napi::Env env, Engine<Algo>& engine) {
  engine.synchronize();  // the buffers are read after the queued steps
  const int n = engine.param_count();
  auto steps = Napi::Float64Array::New(env, size_t(n));
  auto masks = Napi::Uint8Array::New(env, size_t(n));
  auto dtypes = Napi::Uint8Array::New(env, size_t(n));
  auto blocks = Napi::Int32Array::New(env, size_t(n));
  std::vector<TableEntry> table;
  for (int i = 0; i < n; ++i) {
    auto b = engine.state_buffers(i);
    const int64_t numel = engine.param_numel(i);
    steps[size_t(i)] = b.has_state ? double(b.step) : -1.0;
    const StateFormat f = b.has_state ? b.format : engine.state_format(i);
    dtypes[size_t(i)] = uint8_t(f.dtype);
    blocks[size_t(i)] = f.block;
    uint8_t mask = 0;
    if (b.has_state) {
      for (int k = 0; k < Algo::kStates; ++k) {
        if (!b.states[k]) continue;
        mask |= uint8_t(1u << k);
        state_entries(table, b.states[k], f, numel);
      }
      if (b.master) {
        mask |= kMasterBit;
        table.push_back(master_entry(b.master, numel));
      }
    }
    masks[size_t(i)] = mask;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("steps", steps);
  out.Set("masks", masks);
  out.Set("stateDtypes", dtypes);
  out.Set("blockSizes", blocks);
  out.Set("table", tensor_table(env, std::move(table)));
  return out;
}

// The file's state format of each staged param: stateDtypes (Uint8Array of StateDType codes)
// and blockSizes (Int32Array), both optional (then: the param's own).
inline StateFormat file_format_arg(const Napi::Value& dtypes, const Napi::Value& blocks, size_t i, size_t count,
                                   StateFormat own) {
  if (dtypes.IsUndefined()) return own;
  auto d = typed_arg<Napi::Uint8Array>(dtypes, napi_uint8_array, count, "stateDtypes");
  auto b = typed_arg<Napi::Int32Array>(blocks, napi_int32_array, count, "blockSizes");
  StateFormat f;
  if (!state_dtype_from_int(int32_t(d[i]), &f.dtype))
    throw fo::RangeError("stateDtypes[" + std::to_string(i) + "] must be 0 (float32), 1 (bfloat16) or 2 (uint8)");
  f.block = b[i];
  if (!valid_quant_block(f.block))
    throw fo::RangeError("blockSizes[" + std::to_string(i) + "] must be 256 or 2048, got " + std::to_string(f.block));
  return f;
}

// checkpointStage(indices: Int32Array, masks: Uint8Array, stateDtypes?, blockSizes?) ->
// { table, fresh: Uint8Array }: the buffers a load reads into (Engine::stage_load), in the
// file's format (entries as state_entries lists them), and which entries were created for it.
template <typename Algo>
Napi::Value stage(const Napi::CallbackInfo& info, Engine<Algo>& engine) {
  Napi::Env env = info.Env();
  auto indices = indices_arg(info[0], engine.param_count());
  const size_t count = indices.ElementLength();
  auto masks = typed_arg<Napi::Uint8Array>(info[1], napi_uint8_array, count, "masks");
  std::vector<StateFormat> formats(count);
  for (size_t i = 0; i < count; ++i)
    formats[i] = file_format_arg(info[2], info[3], i, count, engine.state_format(indices[i]));
  std::vector<TableEntry> table;
  std::vector<uint8_t> fresh;
  for (size_t i = 0; i < count; ++i) {
    bool want[Algo::kStates] = {};
    for (int k = 0; k < Algo::kStates; ++k) want[k] = (masks[i] >> k) & 1u;
    auto b = engine.stage_load(indices[i], want, (masks[i] & kMasterBit) != 0, formats[i]);
    const int64_t numel = engine.param_numel(indices[i]);
    for (int k = 0; k < Algo::kStates; ++k) {
      if (!want[k]) continue;
      const size_t before = table.size();
      state_entries(table, b.states[k], b.format, numel);
      fresh.insert(fresh.end(), table.size() - before, uint8_t(b.fresh[k]));
    }
    if (masks[i] & kMasterBit) {
      table.push_back(master_entry(b.master, numel));
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
