// Module entry: the per-environment Addon (addon.h) registers the native classes, the
// backend probe and the copy-bandwidth measurement.
#include <napi.h>

#include <stdexcept>
#include <string>

#include "../common/bandwidth.h"
#include "../cpu/thread_pool.h"
#include "../cuda/cuda_backend.h"
#include "checkpoint_wrap.h"
#include "emulator_wrap.h"
#include "addon.h"
#include "args.h"
#include "js_errors.h"
#include "layouts.h"
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
// (native/common/bandwidth.h). src/bandwidth.ts validates first; the checks here keep a
// wrong call from JavaScript from allocating nonsense.
Napi::Value copy_bandwidth(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const int64_t bytes = args::integer(info[0], "copyBandwidth: bytes", int64_t(fo::kMinBandwidthBytes),
                                        int64_t(fo::kMaxBandwidthBytes));
    const int64_t iterations = args::integer(info[1], "copyBandwidth: iterations", 1, fo::kMaxBandwidthIterations);
    const int device = args::code(info[2], "copyBandwidth: device code (0 cpu, 1 cuda)", 2);
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

// Runs once per environment (the main thread and each worker thread): the classes and
// functions are made afresh for it, and its Addon is deleted when it is torn down.
Addon::Addon(Napi::Env env, Napi::Object exports) {
  Napi::Function tensor_class = TensorWrap::define(env);
  tensor_class_ = Napi::Persistent(tensor_class);
  exports.Set("TensorHandle", tensor_class);
  // One line per algorithm (native/core/algorithms.h): its handle class and its layout.
  Napi::Object layouts = common_layouts(env);
  register_optimizer<fo::AdamWAlgo>(env, exports, layouts);
  register_optimizer<fo::LionAlgo>(env, exports, layouts);
  register_optimizer<fo::SgdAlgo>(env, exports, layouts);
  exports.Set("layouts", layouts);
  exports.Set("nativeInfo", Napi::Function::New(env, native_info));
  register_grad_ops(env, exports);
  register_checkpoint_io(env, exports);
  exports.Set("copyBandwidth", Napi::Function::New(env, copy_bandwidth));
  register_emulator(env, exports);
  // Runs before Node-API finalizes this environment's objects (hooks run in reverse order of
  // registration, and Node-API registered its own when the environment was created).
  env.AddCleanupHook([lifetime = lifetime_] { lifetime->closing.store(true); });
  DefineAddon(exports, {});
}

}  // namespace fo::addon

using FusedOptimAddon = fo::addon::Addon;  // the macro pastes the name into identifiers
NODE_API_NAMED_ADDON(fused_optim, FusedOptimAddon)
