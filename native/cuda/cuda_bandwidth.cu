// Device copy bandwidth (see native/common/bandwidth.h): cudaMemcpyAsync device to device
// on a stream of its own, each copy timed with a pair of CUDA events, after one untimed
// warm-up copy. Same convention as the CPU figure: a copy of N bytes counts 2 * N bytes
// (read + write), as the optimizers' bytes per param count every read and every write.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "../common/errors.h"
#include "../common/bandwidth.h"
#include "cuda_check.h"

namespace fo::cuda {

namespace {

// Owns what one measurement creates, so an error part-way frees everything.
struct Resources {
  void* src = nullptr;
  void* dst = nullptr;
  cudaStream_t stream = nullptr;
  std::vector<cudaEvent_t> events;
  ~Resources() {
    if (stream) cudaStreamSynchronize(stream);
    for (cudaEvent_t e : events) cudaEventDestroy(e);
    if (stream) cudaStreamDestroy(stream);
    if (src) cudaFree(src);
    if (dst) cudaFree(dst);
  }
};

}  // namespace

BandwidthResult copy_bandwidth(size_t bytes, int iterations) {
  check_bandwidth_args(bytes, iterations);

  Resources r;
  cudaError_t e = cudaMalloc(&r.src, bytes);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    throw RangeError("copyBandwidth: cannot allocate 2 x " + std::to_string(bytes) + " bytes of device memory");
  }
  check(e, "copyBandwidth: cudaMalloc");
  e = cudaMalloc(&r.dst, bytes);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    throw RangeError("copyBandwidth: cannot allocate 2 x " + std::to_string(bytes) + " bytes of device memory");
  }
  check(e, "copyBandwidth: cudaMalloc");
  check(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking), "copyBandwidth: cudaStreamCreate");
  check(cudaMemsetAsync(r.src, 0x3c, bytes, r.stream), "copyBandwidth: cudaMemsetAsync");
  check(cudaMemsetAsync(r.dst, 0, bytes, r.stream), "copyBandwidth: cudaMemsetAsync");
  r.events.resize(size_t(iterations) + 1, nullptr);
  for (cudaEvent_t& ev : r.events) check(cudaEventCreate(&ev), "copyBandwidth: cudaEventCreate");

  // Warm-up, then back-to-back copies with an event between each: event i..i+1 times copy i.
  check(cudaMemcpyAsync(r.dst, r.src, bytes, cudaMemcpyDeviceToDevice, r.stream), "copyBandwidth: cudaMemcpyAsync");
  check(cudaEventRecord(r.events[0], r.stream), "copyBandwidth: cudaEventRecord");
  for (int i = 0; i < iterations; ++i) {
    check(cudaMemcpyAsync(r.dst, r.src, bytes, cudaMemcpyDeviceToDevice, r.stream), "copyBandwidth: cudaMemcpyAsync");
    check(cudaEventRecord(r.events[size_t(i) + 1], r.stream), "copyBandwidth: cudaEventRecord");
  }
  check(cudaStreamSynchronize(r.stream), "copyBandwidth: cudaStreamSynchronize");

  std::vector<double> seconds(static_cast<size_t>(iterations));
  for (int i = 0; i < iterations; ++i) {
    float ms = 0;
    check(cudaEventElapsedTime(&ms, r.events[size_t(i)], r.events[size_t(i) + 1]),
          "copyBandwidth: cudaEventElapsedTime");
    seconds[size_t(i)] = double(ms) / 1e3;
  }

  BandwidthResult out;
  out.bytes = bytes;
  out.iterations = iterations;
  out.threads = 0;
  out.chunk_bytes = 0;
  out.best_seconds = *std::min_element(seconds.begin(), seconds.end());
  out.median_seconds = median_of(seconds);
  // An event pair can read 0 ms for a tiny copy: report 0 (not measurable) rather than divide by 0.
  out.best_gbps = out.best_seconds > 0 ? 2.0 * double(bytes) / out.best_seconds / 1e9 : 0.0;
  out.median_gbps = out.median_seconds > 0 ? 2.0 * double(bytes) / out.median_seconds / 1e9 : 0.0;
  out.method = "cudaMemcpy";
  out.methods.push_back({out.method, out.best_gbps, out.median_gbps});
  return out;
}

}  // namespace fo::cuda
