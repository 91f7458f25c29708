#include "tensor.h"

#include <cstdio>
#include <cstring>
#include <string>

#include "../common/half_convert.h"
#include "../cuda/cuda_backend.h"
#include "errors.h"

namespace fo {

namespace {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
  return buf;
}

void check_numel(int64_t numel) {
  // 2^46 elements is far past any memory; the bound keeps byte arithmetic from overflowing.
  if (numel < 0 || numel > (int64_t(1) << 46))
    throw RangeError("tensor element count " + std::to_string(numel) + " is out of range");
}

// Converts n elements of dtype at src (host memory) to fp32.
void convert_to_float32_host(const void* src, DType dtype, int64_t n, float* out) {
  if (dtype == DType::Float32) {
    std::memcpy(out, src, size_t(n) * 4);
    return;
  }
  const uint16_t* h = static_cast<const uint16_t*>(src);
  if (dtype == DType::Float16)
    for (int64_t i = 0; i < n; ++i) out[i] = half_bits_to_float(h[i]);
  else
    for (int64_t i = 0; i < n; ++i) out[i] = bf16_bits_to_float(h[i]);
}

void convert_from_float32_host(const float* values, DType dtype, int64_t n, void* dst) {
  if (dtype == DType::Float32) {
    std::memcpy(dst, values, size_t(n) * 4);
    return;
  }
  uint16_t* h = static_cast<uint16_t*>(dst);
  if (dtype == DType::Float16)
    for (int64_t i = 0; i < n; ++i) h[i] = float_to_half_bits(values[i]);
  else
    for (int64_t i = 0; i < n; ++i) h[i] = float_to_bf16_bits(values[i]);
}

void require_half(const Tensor& t, const char* op) {
  if (t.dtype == DType::Float32)
    throw TypeError(std::string(op) + " takes raw 16-bit values, but the tensor is float32");
}

}  // namespace

std::shared_ptr<Tensor> make_tensor(Device device, DType dtype, int64_t numel) {
  check_numel(numel);
  auto t = std::make_shared<Tensor>();
  t->dtype = dtype;
  t->numel = numel;
  t->storage = Storage::allocate(device, size_t(numel) * dtype_size(dtype));
  return t;
}

std::shared_ptr<Tensor> wrap_device_pointer(uint64_t address, DType dtype, int64_t numel) {
  check_numel(numel);
  if (address == 0) throw TypeError("fromDevicePointer: ptr is null");
  const cuda::Probe& p = cuda::probe();
  if (!p.usable) throw std::runtime_error("fromDevicePointer needs a usable CUDA device: " + p.error);
  void* ptr = reinterpret_cast<void*>(uintptr_t(address));
  if (address % dtype_size(dtype) != 0)
    throw TypeError("fromDevicePointer: ptr is not aligned to the element size of " + std::string(dtype_name(dtype)));
  const cuda::DeviceAllocation a = cuda::device_allocation(ptr);
  if (!a.device_memory) throw TypeError("fromDevicePointer: ptr is not CUDA device memory of the current device");
  // The kernels would read and write the whole view: a shape larger than the memory behind
  // ptr must be refused here, before a fault breaks the CUDA context of the whole process.
  const uint64_t bytes = uint64_t(numel) * dtype_size(dtype);
  if (!a.extent_known)
    throw std::runtime_error("fromDevicePointer: the NVIDIA driver cannot tell the size of the allocation holding ptr");
  const uint64_t available = a.base + a.size - address;
  if (bytes > available)
    throw RangeError("fromDevicePointer: " + std::to_string(numel) + " " + dtype_name(dtype) + " elements need " +
                     std::to_string(bytes) + " bytes from ptr, but its allocation (" + std::to_string(a.size) +
                     " bytes at 0x" + hex(a.base) + ") holds only " + std::to_string(available) + " from there");
  auto t = std::make_shared<Tensor>();
  t->dtype = dtype;
  t->numel = numel;
  t->storage = Storage::wrap_foreign(ptr, size_t(numel) * dtype_size(dtype));
  return t;
}

void read_float32(const Tensor& t, float* out) {
  const void* src = t.storage->data("tensor");
  t.storage->check_not_in_use();
  if (t.device() == Device::CPU) {
    convert_to_float32_host(src, t.dtype, t.numel, out);
    return;
  }
  std::vector<uint8_t> staging(t.byte_size());
  cuda::copy_device_to_host(staging.data(), src, staging.size());
  convert_to_float32_host(staging.data(), t.dtype, t.numel, out);
}

void write_float32(Tensor& t, const float* values) {
  void* dst = t.storage->data("tensor");
  t.storage->check_not_in_use();
  if (t.device() == Device::CPU) {
    convert_from_float32_host(values, t.dtype, t.numel, dst);
  } else {
    std::vector<uint8_t> staging(t.byte_size());
    convert_from_float32_host(values, t.dtype, t.numel, staging.data());
    cuda::copy_host_to_device(dst, staging.data(), staging.size());
  }
  t.storage->bump_version();
}

void read_bits16(const Tensor& t, uint16_t* out) {
  require_half(t, "toBits");
  const void* src = t.storage->data("tensor");
  t.storage->check_not_in_use();
  if (t.device() == Device::CPU)
    std::memcpy(out, src, t.byte_size());
  else
    cuda::copy_device_to_host(out, src, t.byte_size());
}

void write_bits16(Tensor& t, const uint16_t* bits) {
  require_half(t, "copyFrom(Uint16Array)");
  void* dst = t.storage->data("tensor");
  t.storage->check_not_in_use();
  if (t.device() == Device::CPU)
    std::memcpy(dst, bits, t.byte_size());
  else
    cuda::copy_host_to_device(dst, bits, t.byte_size());
  t.storage->bump_version();
}

void zero_fill(Tensor& t) {
  void* dst = t.storage->data("tensor");
  t.storage->check_not_in_use();
  if (t.device() == Device::CPU)
    std::memset(dst, 0, t.byte_size());
  else
    cuda::zero(dst, t.byte_size());
  t.storage->bump_version();
}

}  // namespace fo
