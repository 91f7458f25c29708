#pragma once
// Kernel launches (FO_LAUNCH in native/cuda/cuda_check.h expands to cuda_emu::launch): the
// arguments are converted to the kernel's parameter types and copied when the launch is
// made, as CUDA does, and the launch is queued on its stream like any other work.
#include <cstddef>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include "language.h"
#include "runtime_api.h"

namespace cuda_emu {

// Where a launch was written, for error messages.
struct LaunchSite {
  const char* kernel;  // the launch's first argument as written
  const char* file;
  int line;
};

// One launch's kernel and argument copy; every emulated thread calls run_thread().
class KernelCall {
 public:
  virtual ~KernelCall() = default;
  virtual void run_thread() const = 0;
};

// Checks the configuration and queues the launch on `stream` (or records the launch error
// that cudaGetLastError then returns).
void enqueue_launch(std::unique_ptr<KernelCall> call, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                    size_t param_bytes, const LaunchSite& site);

// The size of the kernel's parameter block as CUDA lays it out (each parameter at its
// natural alignment), checked against the kernel parameter limit.
template <class... Params>
constexpr size_t param_block_bytes() {
  size_t offset = 0;
  ((offset = (offset + alignof(Params) - 1) / alignof(Params) * alignof(Params) + sizeof(Params)), ...);
  return offset;
}

template <class... Params>
class BoundCall final : public KernelCall {
 public:
  using Kernel = void (*)(Params...);
  BoundCall(Kernel kernel, std::tuple<std::decay_t<Params>...> args) : kernel_(kernel), args_(std::move(args)) {}
  // Each emulated thread gets its own copy of the parameters, as on the GPU.
  void run_thread() const override { std::apply(kernel_, args_); }

 private:
  Kernel kernel_;
  std::tuple<std::decay_t<Params>...> args_;
};

template <class... Params>
class Launch {
 public:
  using Kernel = void (*)(Params...);
  Launch(Kernel kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, LaunchSite site)
      : kernel_(kernel), grid_(grid), block_(block), shared_bytes_(shared_bytes), stream_(stream), site_(site) {}

  template <class... Args>
  void operator()(Args&&... args) const {
    static_assert(sizeof...(Args) == sizeof...(Params), "wrong number of kernel arguments");
    auto call = std::make_unique<BoundCall<Params...>>(
        kernel_, std::tuple<std::decay_t<Params>...>(static_cast<std::decay_t<Params>>(std::forward<Args>(args))...));
    enqueue_launch(std::move(call), grid_, block_, shared_bytes_, stream_, param_block_bytes<std::decay_t<Params>...>(),
                   site_);
  }

 private:
  Kernel kernel_;
  dim3 grid_, block_;
  size_t shared_bytes_;
  cudaStream_t stream_;
  LaunchSite site_;
};

template <class... Params>
Launch<Params...> launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                         const char* name, const char* file, int line) {
  return Launch<Params...>(kernel, grid, block, shared_bytes, stream, LaunchSite{name, file, line});
}

}  // namespace cuda_emu
