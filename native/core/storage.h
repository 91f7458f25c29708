#pragma once
// A block of host or device memory behind a Tensor. Shared (std::shared_ptr) between the
// JavaScript handle and the optimizers that hold the tensor, so memory lives as long as
// anything uses it. dispose() frees it at once unless an asynchronous step has it pinned,
// in which case it is freed when the step unpins it.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>

namespace fo {

enum class Device : int32_t { CPU = 0, CUDA = 1 };
inline constexpr const char* kDeviceNames[] = {"cpu", "cuda"};  // by code; in native().layouts

inline const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

class Storage {
 public:
  // Zero-filled memory owned by the storage.
  static std::shared_ptr<Storage> allocate(Device device, size_t bytes);
  // CUDA memory owned by someone else: never freed here.
  static std::shared_ptr<Storage> wrap_foreign(void* ptr, size_t bytes);

  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  Device device() const { return device_; }
  size_t bytes() const { return bytes_; }
  bool owned() const { return owned_; }
  bool disposed() const { return disposed_.load(); }
  // Throws if disposed; `what` names the tensor in the message.
  void* data(const char* what) const;
  void* data_unchecked() const { return ptr_; }

  void dispose();
  void pin();
  void unpin();
  // Throws when an asynchronous step holds the storage: host reads and writes would race it.
  void check_not_in_use();

  // Bumped by every write through the public tensor API, so optimizers can tell that a
  // param's value was replaced and its fp32 master must be re-read.
  uint64_t version() const { return version_.load(); }
  void bump_version() { version_.fetch_add(1); }

 private:
  Storage(Device device, void* ptr, size_t bytes, size_t capacity, bool owned)
      : device_(device), ptr_(ptr), bytes_(bytes), capacity_(capacity), owned_(owned) {}
  void free_memory();

  Device device_;
  void* ptr_;
  size_t bytes_;
  size_t capacity_;  // bytes actually allocated (bytes_ rounded up)
  bool owned_;
  std::atomic<bool> disposed_{false};
  std::atomic<uint64_t> version_{0};
  std::mutex pin_mutex_;
  int pins_ = 0;
  bool freed_ = false;
};

}  // namespace fo
