#include "storage.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "../cuda/cuda_backend.h"
#include "errors.h"

namespace fo {

namespace {
// 64-byte alignment: a cache line, and enough for any SIMD load the CPU backend issues.
constexpr size_t kHostAlignment = 64;
// Large host blocks come straight from the kernel: zero-filled for free, page aligned, and
// returned to the system by dispose() (malloc may keep freed blocks in its heap).
constexpr size_t kMapThreshold = size_t(1) << 20;

void* host_alloc(size_t bytes) {
  if (bytes >= kMapThreshold) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  void* p = std::aligned_alloc(kHostAlignment, bytes);
  if (p) std::memset(p, 0, bytes);
  return p;
}

void host_free(void* p, size_t bytes) {
  if (bytes >= kMapThreshold)
    munmap(p, bytes);
  else
    std::free(p);
}
}  // namespace

std::shared_ptr<Storage> Storage::allocate(Device device, size_t bytes) {
  size_t rounded = (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
  if (rounded == 0) rounded = kHostAlignment;
  void* ptr = nullptr;
  if (device == Device::CPU) {
    ptr = host_alloc(rounded);
    if (!ptr) throw RangeError("out of host memory allocating " + std::to_string(bytes) + " bytes");
  } else {
    ptr = cuda::device_alloc(rounded);
    try {
      cuda::zero(ptr, rounded);
    } catch (...) {
      cuda::device_free(ptr);
      throw;
    }
  }
  return std::shared_ptr<Storage>(new Storage(device, ptr, bytes, rounded, true));
}

std::shared_ptr<Storage> Storage::wrap_foreign(void* ptr, size_t bytes) {
  return std::shared_ptr<Storage>(new Storage(Device::CUDA, ptr, bytes, bytes, false));
}

Storage::~Storage() { free_memory(); }

void* Storage::data(const char* what) const {
  if (disposed_.load()) throw std::runtime_error(std::string(what) + " has been disposed");
  return ptr_;
}

void Storage::dispose() {
  std::lock_guard<std::mutex> lock(pin_mutex_);
  disposed_.store(true);
  if (pins_ == 0) free_memory();
}

void Storage::pin() {
  std::lock_guard<std::mutex> lock(pin_mutex_);
  ++pins_;
}

void Storage::unpin() {
  std::lock_guard<std::mutex> lock(pin_mutex_);
  if (--pins_ == 0 && disposed_.load()) free_memory();
}

void Storage::check_not_in_use() {
  std::lock_guard<std::mutex> lock(pin_mutex_);
  if (pins_ > 0)
    throw std::runtime_error(
        "the tensor is in use by a running stepAsync() or checkpoint save or load; await it first");
}

void Storage::free_memory() {
  if (freed_) return;
  freed_ = true;
  if (!owned_ || !ptr_) return;
  if (device_ == Device::CPU)
    host_free(ptr_, capacity_);
  else
    cuda::device_free(ptr_);
  ptr_ = nullptr;
}

}  // namespace fo
