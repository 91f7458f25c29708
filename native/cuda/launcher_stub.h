#pragma once
// cuda::Launcher<T, S> of a binary built without a CUDA compiler (FO_CUDA_STUB, set by
// CMakeLists.txt and binding.gyp): every call reports "not compiled". A header, so that any
// algorithm's launcher exists without a list of algorithms here. TypeScript never asks for
// one (cuda::probe().usable is false); a handle made for device 1 anyway gets the error.
#include "cuda_backend.h"

namespace fo::cuda {

[[noreturn]] void not_compiled(const char* what);  // cuda_stub.cpp

template <class T, class S>
struct Launcher<T, S>::Impl {};

template <class T, class S>
Launcher<T, S>::Launcher() {
  not_compiled("Launcher");
}
template <class T, class S>
Launcher<T, S>::~Launcher() = default;
template <class T, class S>
void Launcher<T, S>::set_tensors(const std::vector<T>&) {
  not_compiled("Launcher::set_tensors");
}
template <class T, class S>
void Launcher<T, S>::set_grads(const std::vector<const void*>&) {
  not_compiled("Launcher::set_grads");
}
template <class T, class S>
void Launcher<T, S>::launch(const S*, int, bool) {
  not_compiled("Launcher::launch");
}
template <class T, class S>
void Launcher<T, S>::prepare_grads(const GradPrepass&) {
  not_compiled("Launcher::prepare_grads");
}
template <class T, class S>
bool Launcher<T, S>::read_found_inf() {
  not_compiled("Launcher::read_found_inf");
}
template <class T, class S>
void Launcher<T, S>::synchronize() {
  not_compiled("Launcher::synchronize");
}
template <class T, class S>
void Launcher<T, S>::metrics(const S*, int, MetricSums*) {
  not_compiled("Launcher::metrics");
}
template <class T, class S>
void Launcher<T, S>::wait_for_event(void*) {
  not_compiled("Launcher::wait_for_event");
}
template <class T, class S>
void* Launcher<T, S>::stream() const {
  not_compiled("Launcher::stream");
}
template <class T, class S>
void Launcher<T, S>::copy_to_host(void*, const void*, size_t) {
  not_compiled("Launcher::copy_to_host");
}
template <class T, class S>
void Launcher<T, S>::copy_to_device(void*, const void*, size_t) {
  not_compiled("Launcher::copy_to_device");
}
template <class T, class S>
void Launcher<T, S>::to_float32(float*, const void*, DType, int64_t) {
  not_compiled("Launcher::to_float32");
}

}  // namespace fo::cuda
