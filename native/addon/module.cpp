// Module entry: registers the native classes and the backend probe.
#include <napi.h>

#include "../cpu/thread_pool.h"
#include "../cuda/cuda_backend.h"
#include "optimizer_wrap.h"
#include "tensor_wrap.h"

namespace fo::addon {

namespace {

// What this binary can do; TypeScript turns it into backendInfo() and applies
// FUSED_OPTIM_DEVICE.
Napi::Value native_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const cuda::Probe& p = cuda::probe();
  Napi::Object o = Napi::Object::New(env);
  o.Set("cudaCompiled", Napi::Boolean::New(env, p.compiled));
  o.Set("cudaUsable", Napi::Boolean::New(env, p.usable));
  o.Set("cudaError", Napi::String::New(env, p.error));
  o.Set("cudaDeviceName", Napi::String::New(env, p.device_name));
  o.Set("cudaDeviceCount", Napi::Number::New(env, p.device_count));
  o.Set("cudaComputeCapability", Napi::String::New(env, std::to_string(p.compute_major) + "." +
                                                            std::to_string(p.compute_minor)));
  o.Set("cudaRuntimeVersion", Napi::Number::New(env, p.runtime_version));
  o.Set("cudaDriverVersion", Napi::Number::New(env, p.driver_version));
  o.Set("cudaArchs", Napi::String::New(env, p.compiled_archs));
  o.Set("threads", Napi::Number::New(env, cpu::ThreadPool::instance().threads()));
  return o;
}

}  // namespace

}  // namespace fo::addon

static Napi::Object InitFusedOptim(Napi::Env env, Napi::Object exports) {
  using namespace fo::addon;
  exports.Set("TensorHandle", TensorWrap::define(env));
  exports.Set("AdamWHandle", OptimizerWrap<fo::AdamWAlgo>::define(env, "AdamWHandle"));
  exports.Set("LionHandle", OptimizerWrap<fo::LionAlgo>::define(env, "LionHandle"));
  exports.Set("nativeInfo", Napi::Function::New(env, native_info));
  return exports;
}

NODE_API_MODULE(fused_optim, InitFusedOptim)
