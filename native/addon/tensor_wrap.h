#pragma once
// TensorHandle: the JavaScript object behind a TypeScript Tensor. Owns a shared reference
// to the native tensor; reports its memory to V8 so the garbage collector runs under
// memory pressure. The class is made once per environment (addon.h).
#include <napi.h>

#include <memory>

#include "../core/tensor.h"
#include "addon.h"

namespace fo::addon {

class TensorWrap : public Napi::ObjectWrap<TensorWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  // The native tensor behind a JS value, or throws a TypeError naming `what`.
  static std::shared_ptr<Tensor> unwrap(const Napi::Value& value, const char* what);

  explicit TensorWrap(const Napi::CallbackInfo& info);

 private:
  static Napi::Value create(const Napi::CallbackInfo& info);
  static Napi::Value from_device_pointer(const Napi::CallbackInfo& info);

  Napi::Value to_float32(const Napi::CallbackInfo& info);
  Napi::Value to_bits16(const Napi::CallbackInfo& info);
  void copy_from_float32(const Napi::CallbackInfo& info);
  void copy_from_bits16(const Napi::CallbackInfo& info);
  void zero(const Napi::CallbackInfo& info);
  void dispose(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  Napi::Value device_pointer(const Napi::CallbackInfo& info);

  std::shared_ptr<Tensor> tensor_;
  ExternalMemory memory_;
};

}  // namespace fo::addon
