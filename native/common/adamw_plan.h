#pragma once
// What a backend needs to update one tensor: raw pointers (host or device, matching the
// backend), sizes and the slot of per-step scalars it reads. Built by native/core, which
// has validated every pointer and size; backends trust it.
#include <cstdint>
#include "dtype.h"

namespace fo {

struct AdamWTensor {
  void* param;             // param_dtype elements; for half params refreshed from master
  const void* grad;        // grad_dtype elements
  float* master;           // fp32 master weights, null for fp32 params
  float* exp_avg;
  float* exp_avg_sq;
  float* max_exp_avg_sq;   // null unless the tensor's group uses amsgrad
  int64_t numel;
  int32_t slot;            // index into the step's AdamWSlot table
  DType param_dtype;
  DType grad_dtype;
};

// Elements per work item: a CUDA block's chunk and a CPU thread's chunk (64K, as
// PyTorch's multi_tensor_apply; 256 KiB of fp32 per stream keeps a CPU chunk in L2).
constexpr int64_t kChunkElements = 65536;

}  // namespace fo
