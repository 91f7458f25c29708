#pragma once
// A param's optimizer state between the engine (Engine::ParamState) and JavaScript:
//   { step, stateDtype?: 'float32' | 'bfloat16' | 'uint8', blockSize?: number,
//     <buffer>: Float32Array (fp32) | Uint16Array (bf16 bits) | Uint8Array (8-bit codes),
//     <buffer>_absmax?: Float32Array (8-bit: one per block), master?: Float32Array }
// stateDtype absent means float32 (the format every earlier release wrote).
#include <napi.h>

#include <cstring>
#include <string>
#include <vector>

#include "../common/state_codec.h"
#include "../common/state_dtype.h"
#include "../core/engine.h"
#include "args.h"

namespace fo::addon {

template <class Array>
Array copy_to_js(Napi::Env env, const void* data, size_t count, size_t width) {
  auto out = Array::New(env, count);
  if (count) std::memcpy(out.Data(), data, count * width);
  return out;
}

// as_float32: every buffer decoded to fp32 (stateDict({ stateDtype: 'float32' })).
template <class Algo>
Napi::Object state_to_js(Napi::Env env, const typename Engine<Algo>::ParamState& st, int64_t numel, bool as_float32) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("step", Napi::Number::New(env, double(st.step)));
  const StateFormat f = st.format;
  if (f.dtype != StateDType::Float32 && !as_float32) {
    o.Set("stateDtype", Napi::String::New(env, kStateDTypeNames[int(f.dtype)]));
    if (f.dtype == StateDType::Uint8) o.Set("blockSize", Napi::Number::New(env, f.block));
  }
  for (int k = 0; k < Algo::kStates; ++k) {
    if (!st.present[k]) continue;
    const std::vector<uint8_t>& raw = st.states[k];
    const std::string name = Algo::state_name(k);
    if (f.dtype == StateDType::Float32 || as_float32) {
      auto values = Napi::Float32Array::New(env, size_t(numel));  // decoded straight into it
      if (numel) decode_state(f, raw.data(), numel, Algo::state_signed(k), values.Data());
      o.Set(name, values);
    } else if (f.dtype == StateDType::BFloat16) {
      o.Set(name, copy_to_js<Napi::Uint16Array>(env, raw.data(), size_t(numel), 2));
    } else {
      o.Set(name, copy_to_js<Napi::Uint8Array>(env, raw.data(), size_t(numel), 1));
      o.Set(name + "_absmax", copy_to_js<Napi::Float32Array>(env, state_absmax(raw.data(), numel),
                                                             size_t(quant_blocks(numel, f.block)), 4));
    }
  }
  if (st.has_master) o.Set("master", copy_to_js<Napi::Float32Array>(env, st.master.data(), st.master.size(), 4));
  return o;
}

inline StateFormat state_format_from_js(const Napi::Object& o) {
  StateFormat f;
  const Napi::Value d = o.Get("stateDtype");
  if (!d.IsUndefined() && !d.IsNull()) {
    if (!d.IsString()) throw TypeError("state.stateDtype must be a string, got " + args::type_of(d));
    const std::string name = d.As<Napi::String>().Utf8Value();
    int code = -1;
    for (int i = 0; i < 3; ++i)
      if (name == kStateDTypeNames[i]) code = i;
    if (code < 0) throw RangeError("state.stateDtype must be 'float32', 'bfloat16' or 'uint8', got '" + name + "'");
    f.dtype = StateDType(code);
  }
  const Napi::Value b = o.Get("blockSize");
  if (!b.IsUndefined() && !b.IsNull()) f.block = int32_t(args::integer(b, "state.blockSize", 1, 1 << 30));
  if (!valid_quant_block(f.block))
    throw RangeError("state.blockSize must be 256 or 2048, got " + std::to_string(f.block));
  return f;
}

// One buffer of a JS state in format f, as the engine's raw bytes (sizes are checked by the
// engine against the param; here only that each array has the expected type).
inline std::vector<uint8_t> state_buffer_from_js(const Napi::Object& o, const std::string& key, const StateFormat& f) {
  const Napi::Value v = o.Get(key);
  const std::string what = "state." + key;
  if (f.dtype == StateDType::Float32) {
    auto a = args::typed_array<float>(v, napi_float32_array, "Float32Array", what);
    const uint8_t* p = reinterpret_cast<const uint8_t*>(a.Data());
    return std::vector<uint8_t>(p, p + a.ElementLength() * 4);
  }
  if (f.dtype == StateDType::BFloat16) {
    auto a = args::typed_array<uint16_t>(v, napi_uint16_array, "Uint16Array (bfloat16 bits)", what);
    const uint8_t* p = reinterpret_cast<const uint8_t*>(a.Data());
    return std::vector<uint8_t>(p, p + a.ElementLength() * 2);
  }
  auto codes = args::typed_array<uint8_t>(v, napi_uint8_array, "Uint8Array (8-bit codes)", what);
  auto absmax = args::typed_array<float>(o.Get(key + "_absmax"), napi_float32_array, "Float32Array", what + "_absmax");
  const int64_t n = int64_t(codes.ElementLength());
  if (int64_t(absmax.ElementLength()) != quant_blocks(n, f.block))
    throw RangeError(what + "_absmax has " + std::to_string(absmax.ElementLength()) + " values; " + std::to_string(n) +
                     " codes in blocks of " + std::to_string(f.block) + " need " +
                     std::to_string(quant_blocks(n, f.block)));
  std::vector<uint8_t> raw(size_t(state_buffer_bytes(f, n)), 0);
  if (n) std::memcpy(raw.data(), codes.Data(), size_t(n));
  if (absmax.ElementLength()) std::memcpy(state_absmax(raw.data(), n), absmax.Data(), absmax.ElementLength() * 4);
  return raw;
}

}  // namespace fo::addon
