#pragma once
// Turns the C++ exceptions of native/core into JavaScript errors of the matching kind.
#include <napi.h>

#include <exception>

#include "../core/errors.h"

namespace fo::addon {

// Call from a catch(...) block: rethrows the current exception as a Napi::Error.
[[noreturn]] inline void rethrow_as_js(Napi::Env env) {
  try {
    throw;
  } catch (const Napi::Error&) {
    throw;
  } catch (const fo::TypeError& e) {
    throw Napi::TypeError::New(env, e.what());
  } catch (const fo::RangeError& e) {
    throw Napi::RangeError::New(env, e.what());
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "out of memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

// Runs fn, converting any C++ exception into a JavaScript one.
template <typename Fn>
auto guarded(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (...) {
    rethrow_as_js(env);
  }
}

}  // namespace fo::addon
