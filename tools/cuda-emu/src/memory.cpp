// Emulated device memory: one arena backed by a memfd and mapped twice. At the device
// addresses that cudaMalloc hands out, the pages fault for host code: they carry a
// protection key that host threads keep disabled (or, without pkeys, stay PROT_NONE) and
// only the thread running kernels enables it while they run. The emulator's own copies go
// through a second, always-accessible window onto the same memory, checked against the
// allocation table instead. Every allocation ends (CUDA's 256-byte alignment allowing) at a
// PROT_NONE guard page, and the bytes between its end and the guard carry a canary.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "emu.h"

namespace cuda_emu {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kAlign = 256;    // cudaMalloc's alignment guarantee
constexpr uint8_t kFresh = 0xff;  // new allocations: NaN in fp32, fp16 and bf16 alike
constexpr uint8_t kCanary = 0xcd;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

struct Arena {
  int fd = -1;
  uintptr_t device = 0;  // the device addresses
  uintptr_t view = 0;    // the emulator's window
  size_t size = 0;
  int pkey = -1;
  Protect protect = Protect::Off;
  int open_depth = 0;                      // mprotect mode: nesting of open_device_memory
  std::map<size_t, size_t> free_runs;      // offset -> bytes, coalesced
  std::map<uintptr_t, Allocation> allocs;  // pages_begin -> allocation
  std::vector<uintptr_t> pending_frees;    // pages_begin of the freed_pending ones
  uint64_t next_id = 1;
  size_t used = 0;
  size_t live_count = 0;
  std::map<uintptr_t, size_t> pinned;
};

Arena* make_arena() {
  const Config& c = config();
  auto* a = new Arena;  // never destroyed: static destructors may still free device memory
  a->size = round_up(c.memory_bytes, kPage);
  a->fd = memfd_create("cuda-emu-device-memory", MFD_CLOEXEC);
  if (a->fd < 0 || ftruncate(a->fd, off_t(a->size)) != 0) fatal(std::string("memfd: ") + std::strerror(errno));
  void* dev = mmap(nullptr, a->size, PROT_NONE, MAP_SHARED | MAP_NORESERVE, a->fd, 0);
  void* view = mmap(nullptr, a->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, a->fd, 0);
  if (dev == MAP_FAILED || view == MAP_FAILED) fatal(std::string("mmap of the device arena: ") + std::strerror(errno));
  a->device = reinterpret_cast<uintptr_t>(dev);
  a->view = reinterpret_cast<uintptr_t>(view);
  a->free_runs[0] = a->size;
  a->protect = c.protect;
  if (a->protect == Protect::Pkey) {
    // Access disabled in this thread; every other thread starts with keys 1-15 disabled.
    a->pkey = pkey_alloc(0, PKEY_DISABLE_ACCESS);
    if (a->pkey < 0) a->protect = Protect::Mprotect;
  }
  install_fault_handler();
  return a;
}

Arena& arena() {
  static Arena* a = make_arena();
  return *a;
}

void protect_pages(Arena& a, uintptr_t begin, size_t bytes, bool accessible) {
  int rc;
  if (a.protect == Protect::Pkey && accessible) {
    rc = pkey_mprotect(reinterpret_cast<void*>(begin), bytes, PROT_READ | PROT_WRITE, a.pkey);
  } else {
    rc = mprotect(reinterpret_cast<void*>(begin), bytes, accessible ? PROT_READ | PROT_WRITE : PROT_NONE);
  }
  if (rc != 0) fatal(std::string("mprotect of device memory: ") + std::strerror(errno));
}

uint8_t* view_ptr(Arena& a, uintptr_t device_address) {
  return reinterpret_cast<uint8_t*>(a.view + (device_address - a.device));
}

void check_tail_canary(Arena& a, const Allocation& x, const char* when) {
  const uint8_t* p = view_ptr(a, x.begin + x.bytes);
  const size_t n = x.pages_begin + x.pages_bytes - (x.begin + x.bytes);
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != kCanary) {
      fatal("device memory written past the end of allocation #" + std::to_string(x.id) + " (" +
            std::to_string(x.bytes) + " bytes): byte " + std::to_string(i) + " after its end changed (found " + when +
            ")");
    }
  }
}

void check_head_canary(Arena& a, const Allocation& x, const char* when) {
  const uint8_t* p = view_ptr(a, x.pages_begin);
  const size_t n = x.begin - x.pages_begin;
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != kCanary) {
      fatal("device memory written before the start of allocation #" + std::to_string(x.id) + " (" +
            std::to_string(x.bytes) + " bytes) (found " + when + ")");
    }
  }
}

void release(Arena& a, std::map<uintptr_t, Allocation>::iterator it) {
  Allocation& x = it->second;
  check_head_canary(a, x, "at cudaFree");
  check_tail_canary(a, x, "at cudaFree");
  if (!x.freed_pending) protect_pages(a, x.pages_begin, x.pages_bytes, false);
  const size_t offset = x.pages_begin - a.device;
  // Give the memory back to the system, as a driver does with freed device memory.
  (void)fallocate(a.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(offset), off_t(x.pages_bytes));
  size_t run_offset = offset, run_bytes = x.pages_bytes + kPage;
  auto next = a.free_runs.lower_bound(run_offset);
  if (next != a.free_runs.end() && next->first == run_offset + run_bytes) {
    run_bytes += next->second;
    next = a.free_runs.erase(next);
  }
  if (next != a.free_runs.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == run_offset) {
      run_offset = prev->first;
      run_bytes += prev->second;
      a.free_runs.erase(prev);
    }
  }
  a.free_runs[run_offset] = run_bytes;
  a.used -= x.pages_bytes + kPage;
  a.allocs.erase(it);
}

}  // namespace

void* device_malloc(size_t bytes) {
  Arena& a = arena();
  const size_t user = round_up(bytes == 0 ? 1 : bytes, kAlign);
  const size_t pages = round_up(user, kPage);
  const size_t total = pages + kPage;  // and its guard page
  auto run = a.free_runs.begin();
  while (run != a.free_runs.end() && run->second < total) ++run;
  if (run == a.free_runs.end()) return nullptr;
  const size_t offset = run->first;
  const size_t left = run->second - total;
  a.free_runs.erase(run);
  if (left > 0) a.free_runs[offset + total] = left;

  Allocation x;
  x.id = a.next_id++;
  x.pages_begin = a.device + offset;
  x.pages_bytes = pages;
  x.begin = x.pages_begin + pages - user;  // as close to the guard page as the alignment allows
  x.bytes = bytes;
  protect_pages(a, x.pages_begin, pages, a.protect != Protect::Mprotect);
  uint8_t* v = view_ptr(a, x.pages_begin);
  std::memset(v, kCanary, x.begin - x.pages_begin);
  std::memset(v + (x.begin - x.pages_begin), kFresh, bytes);
  std::memset(v + (x.begin - x.pages_begin) + bytes, kCanary, pages - (x.begin - x.pages_begin) - bytes);
  a.used += total;
  ++a.live_count;
  a.allocs[x.pages_begin] = x;
  return reinterpret_cast<void*>(x.begin);
}

bool device_free(void* ptr, uint64_t current_seq, bool outstanding) {
  Arena& a = arena();
  const uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
  auto it = a.allocs.upper_bound(p);
  if (it == a.allocs.begin()) return false;
  --it;
  Allocation& x = it->second;
  if (x.begin != p || x.freed_pending) return false;
  --a.live_count;
  if (!outstanding) {
    release(a, it);
    return true;
  }
  // Queued work may still use it: make it fault for everyone (kernels included) and release
  // it once the work queued before this call has run.
  x.freed_pending = true;
  x.free_seq = current_seq;
  protect_pages(a, x.pages_begin, x.pages_bytes, false);
  a.pending_frees.push_back(x.pages_begin);
  return true;
}

void release_freed_upto(uint64_t executed_seq) {
  Arena& a = arena();
  if (a.pending_frees.empty()) return;
  std::vector<uintptr_t> still;
  for (uintptr_t pages : a.pending_frees) {
    auto it = a.allocs.find(pages);
    if (it->second.free_seq <= executed_seq)
      release(a, it);
    else
      still.push_back(pages);
  }
  a.pending_frees.swap(still);
}

const Allocation* find_live(uintptr_t p, size_t n) {
  Arena& a = arena();
  auto it = a.allocs.upper_bound(p);
  if (it == a.allocs.begin()) return nullptr;
  --it;
  const Allocation& x = it->second;
  if (x.freed_pending || p < x.begin || p - x.begin > x.bytes || n > x.bytes - (p - x.begin)) return nullptr;
  return &x;
}

const Allocation* find_any(uintptr_t p, bool* in_guard) {
  Arena& a = arena();
  auto it = a.allocs.upper_bound(p);
  if (it == a.allocs.begin()) return nullptr;
  --it;
  const Allocation& x = it->second;
  if (p >= x.pages_begin + x.pages_bytes + kPage) return nullptr;
  *in_guard = p >= x.pages_begin + x.pages_bytes;
  return &x;
}

bool in_arena(uintptr_t p) {
  Arena& a = arena();
  return p >= a.device && p < a.device + a.size;
}

void* view_of(uintptr_t device_address) { return view_ptr(arena(), device_address); }

namespace {
thread_local int granted_depth = 0;
}

void open_device_memory() {
  Arena& a = arena();
  if (a.protect == Protect::Pkey) {
    if (granted_depth++ == 0) pkey_set(a.pkey, 0);
  } else if (a.protect == Protect::Mprotect) {
    if (a.open_depth++ == 0) {
      for (auto& [pages, x] : a.allocs)
        if (!x.freed_pending) protect_pages(a, x.pages_begin, x.pages_bytes, true);
    }
  }
}

void close_device_memory() {
  Arena& a = arena();
  if (a.protect == Protect::Pkey) {
    if (--granted_depth == 0) pkey_set(a.pkey, PKEY_DISABLE_ACCESS);
  } else if (a.protect == Protect::Mprotect) {
    if (--a.open_depth == 0) {
      for (auto& [pages, x] : a.allocs)
        if (!x.freed_pending) protect_pages(a, x.pages_begin, x.pages_bytes, false);
    }
  }
}

void grant_this_thread(bool on) {
  Arena& a = arena();
  if (a.protect == Protect::Pkey) pkey_set(a.pkey, on ? 0 : PKEY_DISABLE_ACCESS);
}

Protect protection_in_use() { return arena().protect; }

void check_canaries(const char* when) {
  Arena& a = arena();
  for (auto& [pages, x] : a.allocs)
    if (!x.freed_pending) check_tail_canary(a, x, when);
}

void device_memory_counters(Counters& c) {
  Arena& a = arena();
  c.live_allocations = a.live_count;
  size_t bytes = 0;
  for (auto& [pages, x] : a.allocs)
    if (!x.freed_pending) bytes += x.bytes;
  c.live_bytes = bytes;
}

size_t device_memory_total() { return arena().size; }
size_t device_memory_used() { return arena().used; }

void* pinned_alloc(size_t bytes) {
  Arena& a = arena();
  const size_t n = round_up(bytes == 0 ? 1 : bytes, kPage);
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  std::memset(p, kFresh, n);  // pinned memory starts undefined, as device memory does
  a.pinned[reinterpret_cast<uintptr_t>(p)] = n;
  return p;
}

bool pinned_free(void* p) {
  Arena& a = arena();
  auto it = a.pinned.find(reinterpret_cast<uintptr_t>(p));
  if (it == a.pinned.end()) return false;
  munmap(p, it->second);
  a.pinned.erase(it);
  return true;
}

bool is_pinned(const void* p) {
  Arena& a = arena();
  const uintptr_t u = reinterpret_cast<uintptr_t>(p);
  auto it = a.pinned.upper_bound(u);
  if (it == a.pinned.begin()) return false;
  --it;
  return u < it->first + it->second;
}

}  // namespace cuda_emu
