#pragma once
// Error handling and the kernel launch syntax shared by the CUDA backend's translation units
// (not part of its interface).
#include <cuda_runtime.h>
#include <stdexcept>
#include <string>

// FO_LAUNCH(kernel, grid, block, shared_bytes, stream)(args...) launches a kernel: the
// triple-chevron launch under nvcc, and the CUDA host emulator's launch (tools/cuda-emu,
// docs/cuda-emulator.md) when these files are compiled as host C++ against its
// cuda_runtime.h. Every launch site uses it, so one source compiles both ways.
#if defined(FO_CUDA_EMULATED)
#define FO_LAUNCH(kernel, grid, block, shared_bytes, stream) \
  ::cuda_emu::launch(kernel, grid, block, shared_bytes, stream, #kernel, __FILE__, __LINE__)
#else
#define FO_LAUNCH(kernel, grid, block, shared_bytes, stream) kernel<<<grid, block, shared_bytes, stream>>>
#endif

namespace fo::cuda {

// "cudaErrorNoDevice: no CUDA-capable device is detected"
inline std::string error_text(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

// Throws "CUDA error <name>: <string> (in <what>)". The failed call's error is also the
// thread's "last error"; clear it so a later, unrelated launch check does not report it
// again. (Sticky errors, such as a faulting kernel, stay: every later call returns them.)
inline void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();
  throw std::runtime_error("CUDA error " + error_text(e) + " (in " + what + ")");
}

// Launchers register their streams with the release queue of cuda_memory.cu, so that
// device_free orders releases after their queued work (NOTE(stream-ordered release)).
void register_stream(cudaStream_t stream);
void unregister_stream(cudaStream_t stream);
void poll_releases() noexcept;  // frees what no queued work can use any more

}  // namespace fo::cuda
