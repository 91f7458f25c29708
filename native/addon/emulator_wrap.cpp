// native().cudaEmulator, in builds against the CUDA host emulator only (FO_CUDA_EMULATED;
// tools/cuda-emu, docs/cuda-emulator.md): its counters, injected failures and
// configuration, for tests. A GPU or CPU-only build registers nothing here.
#include "emulator_wrap.h"

#if defined(FO_CUDA_EMULATED)
#include <cuda_emu/control.h>

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

// failAfter(kind, skip): the next call of `kind` after `skip` successful ones fails.
Napi::Value fail_after(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsString()) throw fo::TypeError("cudaEmulator.failAfter: kind must be a string");
    if (!info[1].IsNumber()) throw fo::TypeError("cudaEmulator.failAfter: skip must be a number");
    const std::string kind = info[0].As<Napi::String>().Utf8Value();
    const int64_t skip = info[1].As<Napi::Number>().Int64Value();
    if (!cuda_emu::fail_after(kind, skip))
      throw fo::RangeError("cudaEmulator.failAfter: kind must be malloc, launch, sync or memcpy, got '" + kind + "'");
    return info.Env().Undefined();
  });
}

}  // namespace
#endif

void register_emulator(Napi::Env env, Napi::Object exports) {
#if defined(FO_CUDA_EMULATED)
  Napi::Object emu = Napi::Object::New(env);
  emu.Set("counters", Napi::Function::New(env, counters));
  emu.Set("failAfter", Napi::Function::New(env, fail_after));
  emu.Set("config", Napi::String::New(env, cuda_emu::describe_config()));
  exports.Set("cudaEmulator", emu);
#else
  (void)env;
  (void)exports;
#endif
}

}  // namespace fo::addon
