#pragma once
// A typed view of a Storage: dtype and element count. Shape is kept by TypeScript; the
// native side only needs the element count to stay in bounds.
#include <cstdint>
#include <memory>
#include <vector>

#include "../common/dtype.h"
#include "storage.h"

namespace fo {

struct Tensor {
  std::shared_ptr<Storage> storage;
  DType dtype = DType::Float32;
  int64_t numel = 0;

  Device device() const { return storage->device(); }
  size_t byte_size() const { return size_t(numel) * dtype_size(dtype); }
};

// numel elements of dtype on device, zero-filled.
std::shared_ptr<Tensor> make_tensor(Device device, DType dtype, int64_t numel);
// Wraps CUDA memory owned by the caller; checks the pointer with the driver.
std::shared_ptr<Tensor> wrap_device_pointer(uint64_t address, DType dtype, int64_t numel);

// Host <-> tensor transfers. Values are converted from/to fp32 (round to nearest even);
// the "bits" variants move raw 16-bit patterns of half tensors unchanged.
void read_float32(const Tensor& t, float* out);
void write_float32(Tensor& t, const float* values);
void read_bits16(const Tensor& t, uint16_t* out);
void write_bits16(Tensor& t, const uint16_t* bits);
void zero_fill(Tensor& t);

}  // namespace fo
