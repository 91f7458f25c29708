#pragma once
// What a backend needs to update one tensor: raw pointers (host or device, matching the
// backend), sizes and the slot of per-step scalars it reads. Built by native/core, which
// has validated every pointer and size; backends trust it.
#include <cstdint>

#include "dtype.h"
#include "state_dtype.h"
#include "fo_macros.h"

namespace fo {

struct AdamWTensor {
  void* param;       // param_dtype elements; for half params refreshed from master
  const void* grad;  // grad_dtype elements
  float* master;     // fp32 master weights, null for fp32 params
  // State buffers, encoded as `state` says (state_dtype.h): fp32 or bf16 elements, or 8-bit
  // codes followed by their absmax values.
  void* exp_avg;
  void* exp_avg_sq;
  void* max_exp_avg_sq;  // null unless the tensor's group uses amsgrad
  int64_t numel;
  int32_t slot;  // index into the step's AdamWSlot table
  DType param_dtype;
  DType grad_dtype;
  uint32_t rng_stream;  // stochastic rounding stream: the param's index in the optimizer
  // Row-sparse grads (lazy mode): grad element i updates param/state element
  // rows[i / row_width] * row_width + i % row_width; numel counts grad elements. Null for
  // dense grads, where grad, param and state share the index.
  const int32_t* rows;
  int64_t row_width;
  StateFormat state;
};

// Calls f(k, buffer, is_signed) for each state buffer pointer of t, in state order; the
// flag picks the 8-bit code map (blockwise_quant.h): first moments are signed.
template <class F>
FO_HD void for_each_state(AdamWTensor& t, F f) {
  f(0, t.exp_avg, true);
  f(1, t.exp_avg_sq, false);
  f(2, t.max_exp_avg_sq, false);
}

// The param/state index of grad element i (see AdamWTensor::rows).
FO_HD int64_t sparse_state_index(const int32_t* rows, int64_t row_width, int64_t i) {
  return int64_t(rows[i / row_width]) * row_width + i % row_width;
}

// Elements per work item: a CUDA block's chunk and a CPU thread's chunk (64K, as
// PyTorch's multi_tensor_apply; 256 KiB of fp32 per stream keeps a CPU chunk in L2).
constexpr int64_t kChunkElements = 65536;

}  // namespace fo
