#pragma once
// Checkpoint I/O for JavaScript (src/checkpoint/native_io.ts): transfers between tensors and
// files on a worker thread (native/checkpoint/transfer.h), and tensor tables, the opaque
// values through which TypeScript names an optimizer's state buffers without copying them.
#include <napi.h>

#include <memory>
#include <vector>

#include "../core/tensor.h"

namespace fo::addon {

// A list of tensors as one JavaScript value (type-tagged, so no other value passes for one):
// how the optimizer handles give out their state buffers and snapshots come back. Transfers
// take a table and, per item, an index into it.
Napi::Value tensor_table(Napi::Env env, std::vector<std::shared_ptr<Tensor>> tensors);

// checkpointWrite, checkpointRead, checkpointSnapshot, crc32 and crc32Method on `exports`.
void register_checkpoint_io(Napi::Env env, Napi::Object exports);

}  // namespace fo::addon
