// native().cudaEmulator, in builds against the CUDA host emulator only (FO_CUDA_EMULATED;
// tools/cuda-emu, docs/cuda-emulator.md): its counters, injected failures and
// configuration, for tests. A GPU or CPU-only build registers nothing here.
#include "emulator_wrap.h"

#if defined(FO_CUDA_EMULATED)
#include <cuda_emu/control.h>
#include <cuda_runtime.h>

#include <string>

#include "js_errors.h"
#endif

namespace fo::addon {

#if defined(FO_CUDA_EMULATED)
namespace {

Napi::Value counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const cuda_emu::Counters c = cuda_emu::counters();
  Napi::Object o = Napi::Object::New(env);
  const auto set = [&](const char* name, uint64_t v) { o.Set(name, Napi::Number::New(env, double(v))); };
  set("launches", c.launches);
  set("blocks", c.blocks);
  set("hostSyncs", c.host_syncs);
  set("copies", c.copies);
  set("memsets", c.memsets);
  set("mallocs", c.mallocs);
  set("frees", c.frees);
  set("liveAllocations", c.live_allocations);
  set("liveBytes", c.live_bytes);
  set("pendingOps", c.pending_ops);
  return o;
}

// failAfter(kind, skip, times = 1): the `times` calls of `kind` after `skip` successful ones fail.
Napi::Value fail_after(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsString()) throw fo::TypeError("cudaEmulator.failAfter: kind must be a string");
    if (!info[1].IsNumber()) throw fo::TypeError("cudaEmulator.failAfter: skip must be a number");
    const std::string kind = info[0].As<Napi::String>().Utf8Value();
    const int64_t skip = info[1].As<Napi::Number>().Int64Value();
    const int64_t times = info[2].IsNumber() ? info[2].As<Napi::Number>().Int64Value() : 1;
    if (!cuda_emu::fail_after(kind, skip, times))
      throw fo::RangeError("cudaEmulator.failAfter: kind must be malloc, launch, sync or memcpy, got '" + kind + "'");
    return info.Env().Undefined();
  });
}

// recordEvent(): a cudaEvent_t recorded on the legacy stream, as a bigint.
Napi::Value record_event(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    cudaEvent_t e = nullptr;
    if (cudaEventCreate(&e) != cudaSuccess || cudaEventRecord(e, nullptr) != cudaSuccess)
      throw std::runtime_error("cudaEmulator.recordEvent: the event could not be created");
    return Napi::BigInt::New(info.Env(), uint64_t(reinterpret_cast<uintptr_t>(e)));
  });
}

void destroy_event(const Napi::CallbackInfo& info) {
  guarded(info.Env(), [&] {
    if (!info[0].IsBigInt()) throw fo::TypeError("cudaEmulator.destroyEvent: event must be a bigint");
    bool lossless = false;
    const uint64_t e = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
    if (cudaEventDestroy(reinterpret_cast<cudaEvent_t>(uintptr_t(e))) != cudaSuccess)
      throw fo::TypeError("cudaEmulator.destroyEvent: not an event");
  });
}

}  // namespace
#endif

void register_emulator(Napi::Env env, Napi::Object exports) {
#if defined(FO_CUDA_EMULATED)
  Napi::Object emu = Napi::Object::New(env);
  emu.Set("counters", Napi::Function::New(env, counters));
  emu.Set("failAfter", Napi::Function::New(env, fail_after));
  emu.Set("recordEvent", Napi::Function::New(env, record_event));
  emu.Set("destroyEvent", Napi::Function::New(env, destroy_event));
  emu.Set("config", Napi::String::New(env, cuda_emu::describe_config()));
  exports.Set("cudaEmulator", emu);
#else
  (void)env;
  (void)exports;
#endif
}

}  // namespace fo::addon
