#pragma once
// AdamWHandle: the JavaScript object behind a TypeScript AdamW optimizer. Argument
// checks and conversions only; the work is in native/core/adamw_engine.
#include <napi.h>

#include <memory>

#include "../core/adamw_engine.h"

namespace fo::addon {

class AdamWWrap : public Napi::ObjectWrap<AdamWWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit AdamWWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value add_param(const Napi::CallbackInfo& info);
  void set_grad(const Napi::CallbackInfo& info);
  void step(const Napi::CallbackInfo& info);
  Napi::Value step_async(const Napi::CallbackInfo& info);
  void synchronize(const Napi::CallbackInfo& info);
  Napi::Value get_state(const Napi::CallbackInfo& info);
  void set_state(const Napi::CallbackInfo& info);

  std::shared_ptr<AdamWEngine> engine_;
};

}  // namespace fo::addon
