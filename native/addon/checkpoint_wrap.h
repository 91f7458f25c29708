#pragma once
// Checkpoint I/O for JavaScript (src/checkpoint/native_io.ts): transfers between tensors and
// files on a worker thread (native/checkpoint/transfer.h), and tensor tables, the opaque
// values through which TypeScript names an optimizer's state buffers without copying them.
#include <napi.h>

#include <memory>
#include <vector>

#include "../core/tensor.h"

namespace fo::addon {

// One entry of a tensor table: `bytes` bytes of a storage from byte `from` (a tensor's data,
// or part of an optimizer state buffer: an 8-bit buffer's codes, or its absmax values), and
// whether they are fp32 values (only those may receive values widened while read).
struct TableEntry {
  std::shared_ptr<Storage> storage;
  size_t from = 0;
  size_t bytes = 0;
  bool float32 = false;
};

// A tensor's whole data as a table entry.
inline TableEntry table_entry_of(const Tensor& t) { return {t.storage, 0, t.byte_size(), t.dtype == DType::Float32}; }

// A list of table entries as one JavaScript value (type-tagged, so no other value passes for
// one): how the optimizer handles give out their state buffers and snapshots come back.
// Transfers take a table and, per item, an index into it. Throws if an entry is not within
// its storage, so nothing JavaScript names through a table reaches past a buffer.
Napi::Value tensor_table(Napi::Env env, std::vector<TableEntry> entries);

// checkpointWrite, checkpointRead, checkpointSnapshot, crc32 and crc32Method on `exports`.
void register_checkpoint_io(Napi::Env env, Napi::Object exports);

}  // namespace fo::addon
