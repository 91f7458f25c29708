#pragma once
// The public cuda::Launcher<Tensor, Slot> (cuda_backend.h) over an algorithm's element
// operation, written once: an algorithm's .cu file defines Launcher<...>::Impl (usually
// DefaultImpl<Op>, below) and instantiates the class. Internal to the CUDA backend.
#include <memory>
#include <vector>

#include "cuda_backend.h"
#include "multi_tensor.cuh"

namespace fo::cuda {

// The Impl an algorithm without extra per-step checks uses.
template <class Op>
struct DefaultImpl {
  mt::Launcher<Op> core;
  void set_tensors(const std::vector<typename Op::Tensor>& tensors) { core.set_tensors(tensors); }
  void check_slots(const typename Op::Slot* slots, int slot_count, const char* fn) const {
    core.check_slots(slots, slot_count, fn);
  }
};

template <class T, class S>
Launcher<T, S>::Launcher() : impl_(std::make_unique<Impl>()) {}

template <class T, class S>
Launcher<T, S>::~Launcher() = default;

template <class T, class S>
void Launcher<T, S>::set_tensors(const std::vector<T>& tensors) {
  impl_->set_tensors(tensors);
}

template <class T, class S>
void Launcher<T, S>::set_grads(const std::vector<const void*>& grads) {
  impl_->core.set_grads(grads);
}

template <class T, class S>
void Launcher<T, S>::launch(const S* slots, int slot_count, bool use_prepass) {
  try {
    impl_->check_slots(slots, slot_count, "Launcher::launch");
  } catch (const std::exception& e) {
    throw NothingLaunched(e.what());
  }
  impl_->core.launch(slots, slot_count, use_prepass);
}

template <class T, class S>
void Launcher<T, S>::prepare_grads(const GradPrepass& pass) {
  impl_->core.prepare_grads(pass);
}

template <class T, class S>
bool Launcher<T, S>::read_found_inf() {
  return impl_->core.read_found_inf();
}

template <class T, class S>
void Launcher<T, S>::synchronize() {
  impl_->core.synchronize();
}

template <class T, class S>
void Launcher<T, S>::metrics(const S* slots, int slot_count, MetricSums* out) {
  impl_->check_slots(slots, slot_count, "Launcher::metrics");
  impl_->core.metrics(slots, slot_count, out);
}

template <class T, class S>
void Launcher<T, S>::wait_for_event(void* event) {
  check(cudaStreamWaitEvent(impl_->core.stream(), static_cast<cudaEvent_t>(event), 0), "cudaStreamWaitEvent");
}

template <class T, class S>
void* Launcher<T, S>::stream() const {
  return impl_->core.stream();
}

template <class T, class S>
void Launcher<T, S>::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, impl_->core.stream()), "cudaMemcpyAsync to host");
  check(cudaStreamSynchronize(impl_->core.stream()), "cudaStreamSynchronize after a copy to host");
}

template <class T, class S>
void Launcher<T, S>::copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, impl_->core.stream()), "cudaMemcpyAsync to device");
  check(cudaStreamSynchronize(impl_->core.stream()), "cudaStreamSynchronize after a copy to device");
}

template <class T, class S>
void Launcher<T, S>::to_float32(float* dst, const void* src, DType src_dtype, int64_t n) {
  convert_to_float32(dst, src, src_dtype, n);
}

}  // namespace fo::cuda
