#include "host_block.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>

namespace fo::mpi {

namespace {

// Blocks by base address. Process-wide because the memory is: blocks may be made and used
// from any JavaScript thread (each collective names its buffers, not a thread).
struct Registry {
  std::mutex mutex;
  std::map<uintptr_t, std::weak_ptr<HostBlock>> blocks;
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: blocks may outlive static teardown
  return *r;
}

}  // namespace

std::shared_ptr<HostBlock> HostBlock::allocate(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  std::shared_ptr<HostBlock> block(new HostBlock(p, bytes));
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.blocks[uintptr_t(p)] = block;
  return block;
}

std::shared_ptr<HostBlock> HostBlock::find(const void* data, size_t bytes) {
  if (!data) return nullptr;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.blocks.upper_bound(uintptr_t(data));
  if (it == r.blocks.begin()) return nullptr;
  --it;
  std::shared_ptr<HostBlock> block = it->second.lock();
  if (!block) return nullptr;
  const uintptr_t begin = uintptr_t(block->data_), end = begin + block->bytes_;
  const uintptr_t lo = uintptr_t(data);
  if (lo < begin || lo > end || bytes > end - lo) return nullptr;
  return block;
}

HostBlock::~HostBlock() {
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.blocks.find(uintptr_t(data_));
    if (it != r.blocks.end() && it->second.expired()) r.blocks.erase(it);
  }
  std::free(data_);
}

}  // namespace fo::mpi
