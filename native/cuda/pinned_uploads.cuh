#pragma once
// Host-to-device copies of a launcher's small tables (the tensor table when it changes, the
// per-step grad pointers, hyperparameter slots beyond those passed inline) without the host
// waiting for the device: each copy leaves from a pinned buffer of its own, reused only once
// an event recorded after the copy has completed. A pageable source would make CUDA
// synchronize the stream before the copy; a single reused buffer would make the host wait
// for the previous copy. Internal to the CUDA backend.
#include <cuda_runtime.h>

#include <cstring>
#include <string>
#include <vector>

#include "cuda_check.h"

namespace fo::cuda {

class PinnedUploads {
 public:
  PinnedUploads() = default;
  PinnedUploads(const PinnedUploads&) = delete;
  PinnedUploads& operator=(const PinnedUploads&) = delete;
  // The owner has synchronized its stream: no copy is in flight.
  ~PinnedUploads() {
    for (Buffer& b : buffers_) {
      if (b.host) (void)cudaFreeHost(b.host);
      if (b.copied) (void)cudaEventDestroy(b.copied);
    }
    (void)cudaGetLastError();
  }

  // Copies `bytes` from host memory `src` to device memory `dst` on `stream`; returns once
  // the copy is queued (src may be reused at once).
  void upload(void* dst, const void* src, size_t bytes, cudaStream_t stream, const std::string& what) {
    if (bytes == 0) return;
    Buffer& b = free_buffer(what);
    if (b.capacity < bytes) {
      if (b.host) check(cudaFreeHost(b.host), ("cudaFreeHost (" + what + ")").c_str());
      b.host = nullptr;
      b.capacity = 0;
      check(cudaMallocHost(&b.host, bytes), ("cudaMallocHost (" + what + ")").c_str());
      b.capacity = bytes;
    }
    std::memcpy(b.host, src, bytes);
    check(cudaMemcpyAsync(dst, b.host, bytes, cudaMemcpyHostToDevice, stream),
          ("cudaMemcpyAsync (" + what + ")").c_str());
    check(cudaEventRecord(b.copied, stream), ("cudaEventRecord (" + what + ")").c_str());
    b.in_flight = true;
  }

 private:
  struct Buffer {
    void* host = nullptr;
    size_t capacity = 0;
    cudaEvent_t copied = nullptr;
    bool in_flight = false;
  };
  // A device this many uploads behind makes the host wait: backpressure, not a leak.
  static constexpr size_t kMaxBuffers = 8;

  Buffer& free_buffer(const std::string& what) {
    for (Buffer& b : buffers_) {
      if (!b.in_flight) return b;
      const cudaError_t e = cudaEventQuery(b.copied);
      if (e == cudaSuccess) {
        b.in_flight = false;
        return b;
      }
      if (e != cudaErrorNotReady) check(e, ("cudaEventQuery (" + what + ")").c_str());
      (void)cudaGetLastError();
    }
    if (buffers_.size() < kMaxBuffers) {
      buffers_.emplace_back();
      check(cudaEventCreateWithFlags(&buffers_.back().copied, cudaEventDisableTiming),
            ("cudaEventCreate (" + what + ")").c_str());
      return buffers_.back();
    }
    Buffer& oldest = buffers_[next_wait_];
    next_wait_ = (next_wait_ + 1) % buffers_.size();
    check(cudaEventSynchronize(oldest.copied), ("cudaEventSynchronize (" + what + ")").c_str());
    oldest.in_flight = false;
    return oldest;
  }

  std::vector<Buffer> buffers_;
  size_t next_wait_ = 0;
};

}  // namespace fo::cuda
