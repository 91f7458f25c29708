#pragma once
#include <napi.h>

namespace fo::addon {

// Adds native().cudaEmulator in emulated builds; does nothing in the others.
void register_emulator(Napi::Env env, Napi::Object exports);

}  // namespace fo::addon
