#include "storage.h"

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
}  // namespace

std::shared_ptr<Storage> Storage::allocate(Device device, size_t bytes) {
  size_t rounded = (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
  if (rounded == 0) rounded = kHostAlignment;
  void* ptr = nullptr;
  if (device == Device::CPU) {
    ptr = std::aligned_alloc(kHostAlignment, rounded);
    if (!ptr) throw RangeError("out of host memory allocating " + std::to_string(bytes) + " bytes");
    std::memset(ptr, 0, rounded);
  } else {
    ptr = cuda::device_alloc(rounded);
    try {
      cuda::zero(ptr, rounded);
    } catch (...) {
      cuda::device_free(ptr);
      throw;
    }
  }
  return std::shared_ptr<Storage>(new Storage(device, ptr, bytes, true));
}

std::shared_ptr<Storage> Storage::wrap_foreign(void* ptr, size_t bytes) {
  return std::shared_ptr<Storage>(new Storage(Device::CUDA, ptr, bytes, false));
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
  if (pins_ > 0) throw std::runtime_error("the tensor is in use by a running stepAsync(); await it first");
}

void Storage::free_memory() {
  if (freed_) return;
  freed_ = true;
  if (!owned_ || !ptr_) return;
  if (device_ == Device::CPU) std::free(ptr_);
  else cuda::device_free(ptr_);
  ptr_ = nullptr;
}

}  // namespace fo
