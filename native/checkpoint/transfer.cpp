#include "transfer.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../common/half_convert.h"
#include "../core/errors.h"
#include "../cuda/cuda_backend.h"
#include "crc32.h"
#include "file_io.h"

namespace fo::ckpt {

namespace {

// Host items from this size on are written from (read into) their own memory.
constexpr size_t kDirectBytes = size_t(1) << 20;
// A direct chunk is checksummed and transferred in pieces of this size, so the CRC reads
// bytes that the write is about to read (or the read has just written) while they are in cache.
constexpr size_t kPieceBytes = size_t(4) << 20;

struct Part {
  size_t item;
  size_t from;   // byte offset in the item's file bytes
  size_t bytes;  // file bytes of this part
};

struct Chunk {
  uint64_t offset = 0;  // file position of the first part
  size_t bytes = 0;
  bool direct = false;
  bool device = false;  // a part is in CUDA memory
  std::vector<Part> parts;
};

size_t source_size(Convert c) {
  switch (c) {
    case Convert::BF16ToF32:
    case Convert::F16ToF32:
      return 2;
    case Convert::F64ToF32:
      return 8;
    default:
      return 4;
  }
}

// Item views the chunker needs: where its bytes are, how many, and whether it may be split
// anywhere (a converted item only at element boundaries).
struct ItemView {
  uint64_t offset;
  uint64_t bytes;
  Device device;
  bool has_memory;  // false: checked only
  bool converted;
};

void check_order(const std::vector<ItemView>& items) {
  uint64_t end = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].offset < end)
      throw RangeError("checkpoint transfer: item " + std::to_string(i) + " at byte " +
                       std::to_string(items[i].offset) + " overlaps the previous item, which ends at byte " +
                       std::to_string(end));
    end = items[i].offset + items[i].bytes;
  }
}

// Cuts items into chunks of at most `cap` bytes (see transfer.h).
std::vector<Chunk> make_chunks(const std::vector<ItemView>& items, size_t cap) {
  std::vector<Chunk> chunks;
  Chunk open;
  auto close = [&] {
    if (!open.parts.empty()) chunks.push_back(std::move(open));
    open = Chunk{};
  };
  for (size_t i = 0; i < items.size(); ++i) {
    const ItemView& it = items[i];
    if (it.bytes == 0) continue;
    if (it.has_memory && it.device == Device::CPU && !it.converted && it.bytes >= kDirectBytes) {
      close();
      Chunk d;
      d.offset = it.offset;
      d.bytes = size_t(it.bytes);
      d.direct = true;
      d.parts.push_back({i, 0, size_t(it.bytes)});
      chunks.push_back(std::move(d));
      continue;
    }
    uint64_t from = 0;
    while (from < it.bytes) {
      const uint64_t at = it.offset + from;
      const bool contiguous = !open.parts.empty() && open.offset + open.bytes == at;
      const size_t room = cap - open.bytes;
      // A converted item starts a chunk of its own unless it fits whole, so that its parts
      // hold whole source elements (cap is a multiple of 8).
      if (!open.parts.empty() && (!contiguous || room == 0 || (it.converted && it.bytes - from > room))) close();
      if (open.parts.empty()) open.offset = at;
      const size_t take = size_t(std::min<uint64_t>(it.bytes - from, cap - open.bytes));
      open.parts.push_back({i, size_t(from), take});
      open.bytes += take;
      open.device = open.device || (it.has_memory && it.device == Device::CUDA);
      from += take;
    }
  }
  close();
  return chunks;
}

// Two staging buffers of `cap` bytes, page-locked when a device chunk needs them, and the
// copy stream of device transfers; both created on first use.
class Staging {
 public:
  Staging(size_t cap, bool pinned) : cap_(cap), pinned_(pinned) {}
  ~Staging() {
    for (uint8_t* b : buffers_) {
      if (!b) continue;
      if (pinned_)
        cuda::free_pinned(b);
      else
        std::free(b);
    }
  }
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;

  uint8_t* buffer(int slot) {
    uint8_t*& b = buffers_[slot];
    if (!b) {
      b = static_cast<uint8_t*>(pinned_ ? cuda::alloc_pinned(cap_) : std::aligned_alloc(64, round_up(cap_)));
      if (!b)
        throw RangeError("out of host memory allocating " + std::to_string(cap_) + " bytes of checkpoint staging");
    }
    return b;
  }
  cuda::CopyStream& stream() {
    if (!stream_) stream_ = std::make_unique<cuda::CopyStream>();
    return *stream_;
  }
  bool has_stream() const { return stream_ != nullptr; }

 private:
  static size_t round_up(size_t n) { return (n + 63) / 64 * 64; }
  size_t cap_;
  bool pinned_;
  uint8_t* buffers_[2] = {nullptr, nullptr};
  std::unique_ptr<cuda::CopyStream> stream_;
};

size_t chunk_capacity(size_t staging_bytes) {
  if (staging_bytes < kMinStagingBytes || staging_bytes > kMaxStagingBytes)
    throw RangeError("checkpoint staging must be from " + std::to_string(kMinStagingBytes) + " to " +
                     std::to_string(kMaxStagingBytes) + " bytes, got " + std::to_string(staging_bytes));
  return staging_bytes / 2 / 64 * 64;
}

uint8_t* memory_of(const Source& s) { return static_cast<uint8_t*>(s.storage->data_unchecked()) + s.from; }

// ---------------------------------------------------------------------------------------
// Writing

class Writer {
 public:
  Writer(int fd, const std::vector<WriteItem>& items, size_t cap, bool pinned)
      : fd_(fd), items_(items), staging_(cap, pinned), crcs_(items.size(), 0) {}

  std::vector<uint32_t> run(const std::vector<Chunk>& chunks) {
    int pending = -1;  // staged chunk whose bytes are (being) copied into buffer pending_slot_
    for (size_t k = 0; k < chunks.size(); ++k) {
      const Chunk& c = chunks[k];
      if (c.direct) {
        flush(chunks, pending);
        write_direct(c);
        continue;
      }
      const int slot = pending >= 0 ? 1 - pending_slot_ : 0;
      if (pending >= 0 && chunks[size_t(pending)].device) staging_.stream().wait(pending_slot_);
      fill(c, slot);  // device copies run while the pending chunk is checksummed and written
      if (pending >= 0) write_staged(chunks[size_t(pending)], pending_slot_);
      pending = int(k);
      pending_slot_ = slot;
    }
    flush(chunks, pending);
    return crcs_;
  }

 private:
  void flush(const std::vector<Chunk>& chunks, int& pending) {
    if (pending < 0) return;
    if (chunks[size_t(pending)].device) staging_.stream().wait(pending_slot_);
    write_staged(chunks[size_t(pending)], pending_slot_);
    pending = -1;
  }

  void fill(const Chunk& c, int slot) {
    uint8_t* buffer = staging_.buffer(slot);
    size_t at = 0;
    for (const Part& p : c.parts) {
      const Source& s = items_[p.item].source;
      if (s.storage->device() == Device::CPU)
        std::memcpy(buffer + at, memory_of(s) + p.from, p.bytes);
      else
        staging_.stream().device_to_host(buffer + at, memory_of(s) + p.from, p.bytes);
      at += p.bytes;
    }
    if (c.device) staging_.stream().mark(slot);
  }

  void write_staged(const Chunk& c, int slot) {
    const uint8_t* buffer = staging_.buffer(slot);
    size_t at = 0;
    for (const Part& p : c.parts) {
      crcs_[p.item] = crc32(crcs_[p.item], buffer + at, p.bytes);
      at += p.bytes;
    }
    write_at(fd_, buffer, c.bytes, c.offset);
  }

  void write_direct(const Chunk& c) {
    const Part& p = c.parts[0];
    const uint8_t* data = memory_of(items_[p.item].source);
    for (size_t at = 0; at < p.bytes; at += kPieceBytes) {
      const size_t n = std::min(kPieceBytes, p.bytes - at);
      crcs_[p.item] = crc32(crcs_[p.item], data + at, n);
      write_at(fd_, data + at, n, c.offset + at);
    }
  }

  int fd_;
  const std::vector<WriteItem>& items_;
  Staging staging_;
  std::vector<uint32_t> crcs_;
  int pending_slot_ = 0;
};

// ---------------------------------------------------------------------------------------
// Reading

void convert_into(Convert c, const uint8_t* src, size_t src_bytes, float* dst) {
  const size_t n = src_bytes / source_size(c);
  switch (c) {
    case Convert::BF16ToF32:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = bf16_bits_to_float(h);
      }
      break;
    case Convert::F16ToF32:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = half_bits_to_float(h);
      }
      break;
    case Convert::F64ToF32:
      for (size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, src + 8 * i, 8);
        dst[i] = float(d);
      }
      break;
    default:
      std::memcpy(dst, src, src_bytes);
  }
}

class Reader {
 public:
  Reader(int fd, const std::vector<ReadItem>& items, size_t cap, bool pinned)
      : fd_(fd), items_(items), staging_(cap, pinned), crcs_(items.size(), 0) {}

  std::vector<uint32_t> run(const std::vector<Chunk>& chunks) {
    int slot = 0;
    for (const Chunk& c : chunks) {
      if (c.direct) {
        read_direct(c);
        continue;
      }
      // The buffer's previous chunk may still be copying to the device.
      if (staging_.has_stream()) staging_.stream().wait(slot);
      uint8_t* buffer = staging_.buffer(slot);
      read_at(fd_, buffer, c.bytes, c.offset);
      deliver(c, buffer, slot);
      slot = 1 - slot;
    }
    if (staging_.has_stream()) staging_.stream().wait_all();
    return crcs_;
  }

 private:
  void deliver(const Chunk& c, const uint8_t* buffer, int slot) {
    size_t at = 0;
    for (const Part& p : c.parts) {
      const ReadItem& it = items_[p.item];
      const uint8_t* bytes = buffer + at;
      at += p.bytes;
      crcs_[p.item] = crc32(crcs_[p.item], bytes, p.bytes);
      if (!it.destination.storage) continue;
      const size_t dst_from = it.convert == Convert::None ? p.from : p.from / source_size(it.convert) * 4;
      uint8_t* dst = memory_of(it.destination) + dst_from;
      if (it.destination.storage->device() == Device::CPU) {
        convert_into(it.convert, bytes, p.bytes, reinterpret_cast<float*>(dst));
      } else if (it.convert == Convert::None) {
        staging_.stream().host_to_device(dst, bytes, p.bytes);
      } else {
        std::vector<float> widened(p.bytes / source_size(it.convert));
        convert_into(it.convert, bytes, p.bytes, widened.data());
        staging_.stream().host_to_device(dst, widened.data(), widened.size() * 4);
        staging_.stream().wait_all();  // `widened` is freed on return (a rare path: imported files)
      }
    }
    if (c.device) staging_.stream().mark(slot);
  }

  void read_direct(const Chunk& c) {
    const Part& p = c.parts[0];
    uint8_t* data = memory_of(items_[p.item].destination);
    for (size_t at = 0; at < p.bytes; at += kPieceBytes) {
      const size_t n = std::min(kPieceBytes, p.bytes - at);
      read_at(fd_, data + at, n, c.offset + at);
      crcs_[p.item] = crc32(crcs_[p.item], data + at, n);
    }
  }

  int fd_;
  const std::vector<ReadItem>& items_;
  Staging staging_;
  std::vector<uint32_t> crcs_;
};

bool any_device(const std::vector<Chunk>& chunks) {
  return std::any_of(chunks.begin(), chunks.end(), [](const Chunk& c) { return c.device; });
}

}  // namespace

uint64_t file_bytes_for(Convert convert, size_t dst_bytes) {
  return convert == Convert::None ? dst_bytes : uint64_t(dst_bytes / 4) * source_size(convert);
}

std::vector<uint32_t> write_items(int fd, const std::vector<WriteItem>& items, size_t staging_bytes) {
  const size_t cap = chunk_capacity(staging_bytes);
  std::vector<ItemView> views;
  views.reserve(items.size());
  for (const WriteItem& it : items)
    views.push_back({it.offset, it.source.bytes, it.source.storage->device(), true, false});
  check_order(views);
  const std::vector<Chunk> chunks = make_chunks(views, cap);
  Writer writer(fd, items, cap, any_device(chunks));
  return writer.run(chunks);
}

std::vector<uint32_t> read_items(int fd, const std::vector<ReadItem>& items, size_t staging_bytes) {
  const size_t cap = chunk_capacity(staging_bytes);
  std::vector<ItemView> views;
  views.reserve(items.size());
  for (const ReadItem& it : items) {
    const bool has_memory = it.destination.storage != nullptr;
    views.push_back({it.offset, it.file_bytes, has_memory ? it.destination.storage->device() : Device::CPU, has_memory,
                     it.convert != Convert::None});
  }
  check_order(views);
  const std::vector<Chunk> chunks = make_chunks(views, cap);
  Reader reader(fd, items, cap, any_device(chunks));
  return reader.run(chunks);
}

std::vector<std::shared_ptr<Storage>> snapshot(const std::vector<Source>& sources) {
  std::vector<std::shared_ptr<Storage>> out;
  out.reserve(sources.size());
  for (const Source& s : sources) {
    auto copy = Storage::allocate(Device::CPU, s.bytes);
    if (s.bytes > 0) {
      if (s.storage->device() == Device::CPU)
        std::memcpy(copy->data_unchecked(), memory_of(s), s.bytes);
      else
        cuda::copy_device_to_host(copy->data_unchecked(), memory_of(s), s.bytes);
    }
    out.push_back(std::move(copy));
  }
  return out;
}

}  // namespace fo::ckpt
