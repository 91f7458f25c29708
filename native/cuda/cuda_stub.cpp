// The CUDA backend of a binary built without a CUDA compiler: compiled instead of
// cuda_device.cu, cuda_memory.cu, cuda_grad_ops.cu and the algorithms' .cu files (their
// launchers are launcher_stub.h). probe() says why CUDA is unavailable; everything else
// throws, and native/core never reaches it because probe().usable is false.
#include <stdexcept>
#include <string>

#include "cuda_backend.h"

namespace fo::cuda {

[[noreturn]] void not_compiled(const char* what) {
  throw std::runtime_error(std::string(what) +
                           ": CUDA support was not compiled into this binary "
                           "(no nvcc found at build time)");
}

const Probe& probe() {
  static const Probe cached = [] {
    Probe p;
    p.compiled = false;
    p.usable = false;
    p.error = "this binary was built without CUDA (no nvcc found at build time)";
    return p;
  }();
  return cached;
}

void* device_alloc(size_t) { not_compiled("device_alloc"); }
void device_free(void*) noexcept {}  // nothing can have been allocated
void copy_host_to_device(void*, const void*, size_t) { not_compiled("copy_host_to_device"); }
void copy_device_to_host(void*, const void*, size_t) { not_compiled("copy_device_to_host"); }
void zero(void*, size_t) { not_compiled("zero"); }
DeviceAllocation device_allocation(const void*) { not_compiled("device_allocation"); }
void convert_to_float32(float*, const void*, DType, int64_t) { not_compiled("convert_to_float32"); }

void* alloc_pinned(size_t) { not_compiled("alloc_pinned"); }
void free_pinned(void*) noexcept {}
struct CopyStream::Impl {};
CopyStream::CopyStream() { not_compiled("CopyStream"); }
CopyStream::~CopyStream() = default;
void CopyStream::device_to_host(void*, const void*, size_t) { not_compiled("CopyStream::device_to_host"); }
void CopyStream::host_to_device(void*, const void*, size_t) { not_compiled("CopyStream::host_to_device"); }
void CopyStream::mark(int) { not_compiled("CopyStream::mark"); }
void CopyStream::wait(int) { not_compiled("CopyStream::wait"); }
void CopyStream::wait_all() { not_compiled("CopyStream::wait_all"); }

void grad_norm_sums(const std::vector<GradRef>&, double, double*) { not_compiled("grad_norm_sums"); }
void scale_grads(const std::vector<GradRef>&, float) { not_compiled("scale_grads"); }
void clamp_grads(const std::vector<GradRef>&, float, float) { not_compiled("clamp_grads"); }

}  // namespace fo::cuda
