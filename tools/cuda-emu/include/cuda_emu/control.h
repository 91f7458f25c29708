#pragma once
// What tests can ask of the emulator beyond the CUDA API: counters of what ran, injected
// failures, and the configuration in force. The emulated addon exposes these to JavaScript
// (native().cudaEmulator); a GPU build has none of it.
#include <cstdint>
#include <string>

namespace cuda_emu {

struct Counters {
  uint64_t launches = 0;    // kernels executed
  uint64_t blocks = 0;      // blocks executed
  uint64_t host_syncs = 0;  // host waits: stream / event / device synchronize, synchronous copies
  uint64_t copies = 0;      // cudaMemcpy / cudaMemcpyAsync executed
  uint64_t memsets = 0;
  uint64_t mallocs = 0;  // successful cudaMalloc calls
  uint64_t frees = 0;
  uint64_t live_allocations = 0;
  uint64_t live_bytes = 0;
  uint64_t pending_ops = 0;  // queued on some stream, not executed yet
};
Counters counters();

// Makes later calls fail as a GPU can: after `skip` more successful calls of that kind, the
// next `times` ones return their error ("malloc": cudaMalloc / cudaMallocHost -> cudaErrorMemoryAllocation;
// "launch": a kernel launch -> cudaErrorLaunchOutOfResources; "sync": a stream / event
// synchronization -> cudaErrorLaunchFailure; "memcpy": a copy -> cudaErrorInvalidValue).
// Returns false for an unknown kind. One pending request per kind; cancel with skip < 0.
bool fail_after(const std::string& kind, int64_t skip, int64_t times = 1);

// "threads=fiber exec=deferred thread-order=forward block-order=forward protect=pkey ..."
std::string describe_config();

}  // namespace cuda_emu
