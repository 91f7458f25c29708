#pragma once
// The machine's copy bandwidth, the yardstick of the performance model (docs/design.md section 6):
// an optimizer step can go no faster than its bytes per parameter over this figure.
//
// Convention, the same as the optimizers' bytes per param: every byte read and every byte
// written counts, so one copy of N bytes moves 2 * N bytes.
//
// cpu::copy_bandwidth copies a large host buffer in chunks spread over the addon's thread
// pool (ThreadPool::instance()), the way the optimizer loops spread theirs, two ways: glibc's
// memcpy per chunk, and a streaming copy (non-temporal stores, four pages interleaved, as
// glibc's own large-copy path). The faster is the machine's copy bandwidth; both are reported.
// cuda::copy_bandwidth times cudaMemcpyAsync device to device with CUDA events; it is
// implemented by native/cuda/cuda_bandwidth.cu, or by cuda_bandwidth_stub.cpp (which throws)
// in a binary built without CUDA. Both are declared here, in plain C++, so native/addon can
// call either without CUDA headers.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "errors.h"

namespace fo {

struct BandwidthMethod {
  std::string name;  // "stream", "memcpy" or "cudaMemcpy"
  double best_gbps = 0;
  double median_gbps = 0;
};

// The top-level figures are those of the fastest method.
struct BandwidthResult {
  std::string method;                    // the fastest method's name
  std::vector<BandwidthMethod> methods;  // every method measured, in a fixed order
  double best_gbps = 0;                  // 2 * bytes / fastest copy, in 1e9 bytes per second
  double median_gbps = 0;                // 2 * bytes / median copy
  double best_seconds = 0;               // the fastest copy
  double median_seconds = 0;             // the median copy
  size_t bytes = 0;                      // bytes of one buffer (one copy moves 2 * bytes)
  int iterations = 0;                    // timed copies per method (after one untimed warm-up copy each)
  int threads = 0;                       // CPU: the pool's threads; CUDA: 0
  int64_t chunk_bytes = 0;               // CPU: bytes per work item handed to the pool; CUDA: 0
};

// Smallest and largest buffers accepted (both checks are repeated in TypeScript).
constexpr size_t kMinBandwidthBytes = size_t(1) << 12;
constexpr size_t kMaxBandwidthBytes = size_t(1) << 40;
constexpr int kMaxBandwidthIterations = 10000;

// The argument checks both backends share.
inline void check_bandwidth_args(size_t bytes, int iterations) {
  if (bytes < kMinBandwidthBytes || bytes > kMaxBandwidthBytes)
    throw RangeError("copyBandwidth: bytes must be from " + std::to_string(kMinBandwidthBytes) + " to " +
                     std::to_string(kMaxBandwidthBytes) + ", got " + std::to_string(bytes));
  if (iterations < 1 || iterations > kMaxBandwidthIterations)
    throw RangeError("copyBandwidth: iterations must be from 1 to " + std::to_string(kMaxBandwidthIterations) +
                     ", got " + std::to_string(iterations));
}

inline double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

namespace cpu {
// Throws fo::RangeError for out-of-range arguments, or when the buffers cannot be allocated.
BandwidthResult copy_bandwidth(size_t bytes, int iterations);
}  // namespace cpu

namespace cuda {
// Copies on the current device. Throws std::runtime_error on CUDA errors, and always in a
// binary built without CUDA.
BandwidthResult copy_bandwidth(size_t bytes, int iterations);
}  // namespace cuda

}  // namespace fo
