#include "tensor_wrap.h"

#include <string>

#include "args.h"
#include "js_errors.h"

namespace fo::addon {

namespace {

// Marks every TensorHandle (napi_type_tag_object): unwrap checks the tag, which is cheaper
// than instanceof and cannot be faked by giving another object the class's prototype.
constexpr napi_type_tag kTensorTag = {0x6f3c8f0b5a1e4d27ULL, 0x9b2d71c4e8a05f36ULL};

// A sentinel passed by create()/from_device_pointer() so `new TensorHandle()` from
// JavaScript cannot build an empty handle.
struct Construct {
  std::shared_ptr<Tensor> tensor;
};

DType dtype_arg(const Napi::Value& v) {
  DType t;
  if (!dtype_from_int(args::code(v, "dtype code (float32, float16, bfloat16)", 3), &t))
    throw fo::TypeError("dtype must be one of float32, float16, bfloat16");
  return t;
}

int64_t numel_arg(const Napi::Value& v) { return args::integer(v, "numel", 0); }

// create() and fromDevicePointer(): a new handle of this environment's class.
Napi::Value new_handle(Napi::Env env, std::shared_ptr<Tensor> tensor) {
  Construct c{std::move(tensor)};
  return Addon::of(env).tensor_class().New({Napi::External<Construct>::New(env, &c)});
}

}  // namespace

Napi::Function TensorWrap::define(Napi::Env env) {
  Napi::Function fn = DefineClass(env, "TensorHandle",
                                  {
                                      StaticMethod("create", &TensorWrap::create),
                                      StaticMethod("fromDevicePointer", &TensorWrap::from_device_pointer),
                                      InstanceMethod("toFloat32", &TensorWrap::to_float32),
                                      InstanceMethod("toBits16", &TensorWrap::to_bits16),
                                      InstanceMethod("copyFromFloat32", &TensorWrap::copy_from_float32),
                                      InstanceMethod("copyFromBits16", &TensorWrap::copy_from_bits16),
                                      InstanceMethod("zero", &TensorWrap::zero),
                                      InstanceMethod("dispose", &TensorWrap::dispose),
                                      InstanceAccessor("disposed", &TensorWrap::disposed, nullptr),
                                      InstanceAccessor("devicePointer", &TensorWrap::device_pointer, nullptr),
                                  });
  return fn;
}

TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info), memory_(info.Env()) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw Napi::TypeError::New(info.Env(),
                               "TensorHandle cannot be constructed directly; use Tensor.from or Tensor.zeros");
  auto* c = info[0].As<Napi::External<Construct>>().Data();
  tensor_ = c->tensor;
  info.This().As<Napi::Object>().TypeTag(&kTensorTag);
  if (tensor_->storage->owned()) memory_.set(int64_t(tensor_->byte_size()));
}

std::shared_ptr<Tensor> TensorWrap::unwrap(const Napi::Value& value, const char* what) {
  if (!value.IsObject() || !value.As<Napi::Object>().CheckTypeTag(&kTensorTag))
    throw fo::TypeError(std::string(what) + " must be a Tensor, got " + args::type_of(value));
  return Unwrap(value.As<Napi::Object>())->tensor_;
}

Napi::Value TensorWrap::create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    DType dtype = dtype_arg(info[0]);
    const Device device = Device(args::code(info[1], "device code (0 cpu, 1 cuda)", 2));
    return new_handle(env, make_tensor(device, dtype, numel_arg(info[2])));
  });
}

Napi::Value TensorWrap::from_device_pointer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsBigInt()) throw fo::TypeError("fromDevicePointer: ptr must be a bigint");
    bool lossless = false;
    uint64_t address = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw fo::RangeError("fromDevicePointer: ptr does not fit in 64 bits");
    return new_handle(env, wrap_device_pointer(address, dtype_arg(info[1]), numel_arg(info[2])));
  });
}

// toFloat32([out]) / toBits16([out]): into `out` when given (a Float32Array / Uint16Array
// of exactly numel elements, e.g. a staging buffer), else into a new array.
Napi::Value TensorWrap::to_float32(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Float32Array out;
    if (info.Length() > 0 && !info[0].IsUndefined()) {
      if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw fo::TypeError("toFloat32Array: out must be a Float32Array");
      out = info[0].As<Napi::Float32Array>();
      if (int64_t(out.ElementLength()) != tensor_->numel)
        throw fo::RangeError("toFloat32Array: out has " + std::to_string(out.ElementLength()) +
                             " elements but the tensor has " + std::to_string(tensor_->numel));
    } else {
      out = Napi::Float32Array::New(info.Env(), size_t(tensor_->numel));
    }
    read_float32(*tensor_, out.Data());
    return out;
  });
}

Napi::Value TensorWrap::to_bits16(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Uint16Array out;
    if (info.Length() > 0 && !info[0].IsUndefined()) {
      if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array)
        throw fo::TypeError("toBits: out must be a Uint16Array");
      out = info[0].As<Napi::Uint16Array>();
      if (int64_t(out.ElementLength()) != tensor_->numel)
        throw fo::RangeError("toBits: out has " + std::to_string(out.ElementLength()) +
                             " elements but the tensor has " + std::to_string(tensor_->numel));
    } else {
      out = Napi::Uint16Array::New(info.Env(), size_t(tensor_->numel));
    }
    read_bits16(*tensor_, out.Data());
    return out;
  });
}

void TensorWrap::copy_from_float32(const Napi::CallbackInfo& info) {
  guarded(info.Env(), [&] {
    auto values = args::typed_array<float>(info[0], napi_float32_array, "Float32Array", "copyFrom: values");
    if (int64_t(values.ElementLength()) != tensor_->numel)
      throw fo::RangeError("copyFrom: got " + std::to_string(values.ElementLength()) + " values for a tensor of " +
                           std::to_string(tensor_->numel) + " elements");
    write_float32(*tensor_, values.Data());
  });
}

void TensorWrap::copy_from_bits16(const Napi::CallbackInfo& info) {
  guarded(info.Env(), [&] {
    auto bits = args::typed_array<uint16_t>(info[0], napi_uint16_array, "Uint16Array", "copyFrom: bits");
    if (int64_t(bits.ElementLength()) != tensor_->numel)
      throw fo::RangeError("copyFrom: got " + std::to_string(bits.ElementLength()) + " values for a tensor of " +
                           std::to_string(tensor_->numel) + " elements");
    write_bits16(*tensor_, bits.Data());
  });
}

void TensorWrap::zero(const Napi::CallbackInfo& info) {
  guarded(info.Env(), [&] { zero_fill(*tensor_); });
}

void TensorWrap::dispose(const Napi::CallbackInfo&) {
  tensor_->storage->dispose();
  memory_.set(0);
}

Napi::Value TensorWrap::disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), tensor_->storage->disposed());
}

Napi::Value TensorWrap::device_pointer(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (tensor_->device() != Device::CUDA) throw fo::TypeError("devicePointer: the tensor is not on cuda");
    return Napi::BigInt::New(info.Env(), uint64_t(uintptr_t(tensor_->storage->data("tensor"))));
  });
}

}  // namespace fo::addon
