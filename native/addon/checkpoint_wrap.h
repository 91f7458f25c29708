#pragma once
// Checkpoint I/O for JavaScript (src/checkpoint/native_io.ts): transfers between tensors and
// files on a worker thread (native/checkpoint/transfer.h), and "storage refs", the opaque
// handles through which TypeScript names an optimizer's state buffers without copying them.
#include <napi.h>

#include <memory>

#include "../core/tensor.h"

namespace fo::addon {

// A JavaScript value standing for a tensor's memory (type-tagged, so no other value passes
// for one). The optimizer handles give them out for their state buffers.
Napi::Value storage_ref(Napi::Env env, std::shared_ptr<Tensor> tensor);
// The tensor behind a storage ref or a TensorHandle; throws a TypeError naming `what`.
std::shared_ptr<Tensor> tensor_of(const Napi::Value& value, const char* what);

// checkpointWrite, checkpointRead, checkpointSnapshot, crc32 and crc32Method on `exports`.
void register_checkpoint_io(Napi::Env env, Napi::Object exports);

}  // namespace fo::addon
