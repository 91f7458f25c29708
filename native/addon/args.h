#pragma once
// Argument checks of the addon, written once: every value that crosses from JavaScript is
// checked here again (src/checks.ts checked it first), so no call can make native code read
// or write out of bounds. The error kinds follow src/checks.ts (and Node's own): a value of
// the wrong type, an unknown key or a value that is none of the allowed choices is a
// TypeError; a number outside its range (or not an integer) a RangeError. `what` names the
// argument in the message.
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>

#include "../core/errors.h"

namespace fo::addon::args {

// 2^53 - 1: the largest integer a JavaScript number holds exactly.
constexpr int64_t kMaxSafeInteger = 9007199254740991;

// The JavaScript type of v, for messages ("got a string").
inline std::string type_of(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined:
      return "undefined";
    case napi_null:
      return "null";
    case napi_boolean:
      return "a boolean";
    case napi_number:
      return "a number";
    case napi_string:
      return "a string";
    case napi_bigint:
      return "a bigint";
    case napi_function:
      return "a function";
    default:
      return v.IsTypedArray() ? "a typed array" : v.IsArray() ? "an array" : "an object";
  }
}

// A number as JavaScript would print it, near enough for messages ("2.5", "1e+20", "NaN").
inline std::string number_text(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.15g", d);
  return buffer;
}

inline double number(const Napi::Value& v, const std::string& what) {
  if (!v.IsNumber()) throw TypeError(what + " must be a number, got " + type_of(v));
  return v.As<Napi::Number>().DoubleValue();
}

inline std::string integer_text(int64_t v) {
  return v == kMaxSafeInteger ? std::string("2^53 - 1") : std::to_string(v);
}

// An integer in [min, max] (max at most 2^53 - 1, where doubles stop being exact).
inline int64_t integer(const Napi::Value& v, const std::string& what, int64_t min, int64_t max = kMaxSafeInteger) {
  const double d = number(v, what);
  if (!(d >= double(min) && d <= double(max)) || d != std::floor(d)) {
    throw RangeError(what + " must be an integer from " + integer_text(min) + " to " + integer_text(max) + ", got " +
                     number_text(d));
  }
  return int64_t(d);
}

// One of a few choices coded 0..count-1 (a dtype, a device). As Node's own
// ERR_INVALID_ARG_VALUE, a value that is none of them is a TypeError, even a number.
inline int code(const Napi::Value& v, const std::string& what, int count) {
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d < count) || d != std::floor(d))
    throw TypeError(what + " must be " + (count == 2 ? "0 or 1" : "an integer from 0 to " + std::to_string(count - 1)) +
                    ", got " + (v.IsNumber() ? number_text(d) : type_of(v)));
  return int(d);
}

inline bool boolean(const Napi::Value& v, const std::string& what) {
  if (!v.IsBoolean()) throw TypeError(what + " must be a boolean, got " + type_of(v));
  return v.As<Napi::Boolean>().Value();
}

// A typed array of one element type (napi_float32_array, ...), as Napi::TypedArrayOf<T>.
template <typename T>
Napi::TypedArrayOf<T> typed_array(const Napi::Value& v, napi_typedarray_type type, const char* type_name,
                                  const std::string& what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw TypeError(what + " must be a " + type_name + ", got " + type_of(v));
  return v.As<Napi::TypedArrayOf<T>>();
}

// An options object: undefined or null is an empty one; any key outside `allowed` is a
// TypeError (a misspelt option must not be ignored).
inline Napi::Object options(const Napi::Value& v, std::initializer_list<const char*> allowed, const std::string& what) {
  Napi::Env env = v.Env();
  if (v.IsUndefined() || v.IsNull()) return Napi::Object::New(env);
  if (!v.IsObject() || v.IsArray()) throw TypeError(what + " must be an object, got " + type_of(v));
  Napi::Object o = v.As<Napi::Object>();
  Napi::Array keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const std::string key = keys.Get(i).ToString().Utf8Value();
    bool known = false;
    for (const char* a : allowed) known = known || key == a;
    if (!known) throw TypeError(what + ": unknown key '" + key + "'");
  }
  return o;
}

// o[key] when present (not undefined), else fallback.
inline bool optional_boolean(const Napi::Object& o, const char* key, bool fallback, const std::string& what) {
  Napi::Value v = o.Get(key);
  return v.IsUndefined() ? fallback : boolean(v, what + "." + key);
}

inline double optional_number(const Napi::Object& o, const char* key, double fallback, const std::string& what) {
  Napi::Value v = o.Get(key);
  return v.IsUndefined() ? fallback : number(v, what + "." + key);
}

}  // namespace fo::addon::args
