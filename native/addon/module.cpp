// Module entry: registers the native classes and the backend probe.
#include <napi.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "../cpu/copy_bandwidth.h"
#include "../cpu/thread_pool.h"
#include "../cuda/cuda_backend.h"
#include "checkpoint_wrap.h"
#include "emulator_wrap.h"
#include "js_errors.h"
#include "grad_ops_wrap.h"
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
  o.Set("cudaComputeCapability",
        Napi::String::New(env, std::to_string(p.compute_major) + "." + std::to_string(p.compute_minor)));
  o.Set("cudaRuntimeVersion", Napi::Number::New(env, p.runtime_version));
  o.Set("cudaDriverVersion", Napi::Number::New(env, p.driver_version));
  o.Set("cudaArchs", Napi::String::New(env, p.compiled_archs));
#if defined(FO_CUDA_EMULATED)
  o.Set("cudaEmulated", Napi::Boolean::New(env, true));
#else
  o.Set("cudaEmulated", Napi::Boolean::New(env, false));
#endif
  o.Set("threads", Napi::Number::New(env, cpu::ThreadPool::instance().threads()));
  return o;
}

// copyBandwidth(bytes, iterations, device) -> { method, methods: [{ name, bestGBps,
// medianGBps }], bestGBps, medianGBps, bestSeconds, medianSeconds, bytes, iterations,
// threads, chunkBytes }: the copy bandwidth that the performance model divides by
// (native/cpu/copy_bandwidth.h). src/bandwidth.ts validates first; the checks here keep a
// wrong call from JavaScript from allocating nonsense.
Napi::Value copy_bandwidth(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) throw fo::TypeError("copyBandwidth: bytes must be a number");
    if (!info[1].IsNumber()) throw fo::TypeError("copyBandwidth: iterations must be a number");
    if (!info[2].IsNumber()) throw fo::TypeError("copyBandwidth: device must be 0 (cpu) or 1 (cuda)");
    const double bytes = info[0].As<Napi::Number>().DoubleValue();
    const double iterations = info[1].As<Napi::Number>().DoubleValue();
    const int device = info[2].As<Napi::Number>().Int32Value();
    if (!(bytes >= double(fo::kMinBandwidthBytes) && bytes <= double(fo::kMaxBandwidthBytes)) ||
        bytes != std::floor(bytes))
      throw fo::RangeError("copyBandwidth: bytes must be an integer from " + std::to_string(fo::kMinBandwidthBytes) +
                           " to " + std::to_string(fo::kMaxBandwidthBytes));
    if (!(iterations >= 1 && iterations <= fo::kMaxBandwidthIterations) || iterations != std::floor(iterations))
      throw fo::RangeError("copyBandwidth: iterations must be an integer from 1 to " +
                           std::to_string(fo::kMaxBandwidthIterations));
    if (device != 0 && device != 1) throw fo::TypeError("copyBandwidth: device must be 0 (cpu) or 1 (cuda)");
    if (device == 1 && !cuda::probe().usable)
      throw std::runtime_error("copyBandwidth: device 'cuda' is not usable: " + cuda::probe().error);
    const fo::BandwidthResult r = device == 0 ? fo::cpu::copy_bandwidth(size_t(bytes), int(iterations))
                                              : fo::cuda::copy_bandwidth(size_t(bytes), int(iterations));
    Napi::Object o = Napi::Object::New(env);
    o.Set("method", Napi::String::New(env, r.method));
    Napi::Array methods = Napi::Array::New(env, r.methods.size());
    for (size_t i = 0; i < r.methods.size(); ++i) {
      Napi::Object m = Napi::Object::New(env);
      m.Set("name", Napi::String::New(env, r.methods[i].name));
      m.Set("bestGBps", Napi::Number::New(env, r.methods[i].best_gbps));
      m.Set("medianGBps", Napi::Number::New(env, r.methods[i].median_gbps));
      methods.Set(uint32_t(i), m);
    }
    o.Set("methods", methods);
    o.Set("bestGBps", Napi::Number::New(env, r.best_gbps));
    o.Set("medianGBps", Napi::Number::New(env, r.median_gbps));
    o.Set("bestSeconds", Napi::Number::New(env, r.best_seconds));
    o.Set("medianSeconds", Napi::Number::New(env, r.median_seconds));
    o.Set("bytes", Napi::Number::New(env, double(r.bytes)));
    o.Set("iterations", Napi::Number::New(env, r.iterations));
    o.Set("threads", Napi::Number::New(env, r.threads));
    o.Set("chunkBytes", Napi::Number::New(env, double(r.chunk_bytes)));
    return o;
  });
}

}  // namespace

}  // namespace fo::addon

static Napi::Object InitFusedOptim(Napi::Env env, Napi::Object exports) {
  using namespace fo::addon;
  exports.Set("TensorHandle", TensorWrap::define(env));
  exports.Set("AdamWHandle", OptimizerWrap<fo::AdamWAlgo>::define(env, "AdamWHandle"));
  exports.Set("LionHandle", OptimizerWrap<fo::LionAlgo>::define(env, "LionHandle"));
  exports.Set("nativeInfo", Napi::Function::New(env, native_info));
  register_grad_ops(env, exports);
  register_checkpoint_io(env, exports);
  exports.Set("copyBandwidth", Napi::Function::New(env, copy_bandwidth));
  register_emulator(env, exports);
  return exports;
}

NODE_API_MODULE(fused_optim, InitFusedOptim)
