#pragma once
// Moving tensor bytes between memory (host or CUDA) and a file, with a CRC-32 of every
// tensor, in bounded memory: the transfers of checkpoint saves and loads. They run on a
// worker thread (native/addon/checkpoint_wrap.cpp), never on the JavaScript thread.
//
// A transfer is a list of items in file order, each one tensor's bytes at a file offset.
// The items are cut into chunks of at most half the staging budget:
// - a large host item is a "direct" chunk: written from, or read into, the tensor's own
//   memory, no copy (the CRC runs over the same pieces just before or after);
// - everything else (small host items, coalesced so 100k small tensors cost a few large
//   writes; device items; items converted while read) goes through two staging buffers, so
//   the device copies of one chunk overlap the file I/O and CRC of the other (page-locked
//   buffers when a chunk touches CUDA memory).
// Nothing is allocated beyond the two staging buffers, whatever the model's size.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "../core/storage.h"

namespace fo::ckpt {

// Staging budget limits (both buffers together).
constexpr size_t kMinStagingBytes = size_t(1) << 20;
constexpr size_t kMaxStagingBytes = size_t(1) << 34;
constexpr size_t kDefaultStagingBytes = size_t(64) << 20;

// `bytes` bytes of a storage (host or CUDA) from byte `from` (an 8-bit state buffer's
// codes or its absmax values are two sources in one storage), which the item keeps alive.
// Whoever builds one checks that from + bytes is within the storage (checkpoint_wrap.cpp).
struct Source {
  std::shared_ptr<Storage> storage;
  size_t bytes = 0;
  size_t from = 0;
};

struct WriteItem {
  Source source;
  uint64_t offset = 0;  // in the file
};

// How file bytes become the destination's: copied, or widened to fp32 (state tensors saved in
// another float type, e.g. imported from a PyTorch run in bfloat16).
enum class Convert : uint8_t { None = 0, BF16ToF32 = 1, F16ToF32 = 2, F64ToF32 = 3 };

// Bytes of the file for `dst_bytes` bytes of destination (dst_bytes a multiple of 4 when
// converting).
uint64_t file_bytes_for(Convert convert, size_t dst_bytes);

struct ReadItem {
  Source destination;  // storage == nullptr: checked (CRC) only
  uint64_t offset = 0;
  uint64_t file_bytes = 0;
  Convert convert = Convert::None;
};

// Items must be in ascending, non-overlapping file order (checked; throws RangeError).
// Returns the CRC-32 of every item's file bytes, in item order.
std::vector<uint32_t> write_items(int fd, const std::vector<WriteItem>& items, size_t staging_bytes);
std::vector<uint32_t> read_items(int fd, const std::vector<ReadItem>& items, size_t staging_bytes);

// Host copies of the sources (memcpy, or a device-to-host copy), for a background save.
std::vector<std::shared_ptr<Storage>> snapshot(const std::vector<Source>& sources);

}  // namespace fo::ckpt
