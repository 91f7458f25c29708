#pragma once
// Optimizer state as the CUDA kernels of multi_tensor.cuh see it: fp32 values in registers,
// whatever the tensor's StateFormat keeps in memory (native/common/state_dtype.h). The
// kernels load a group of elements' state through one of these, run the Op's fp32 rule on
// it and store it back, so each state dtype is written once for every algorithm:
//
//   Fp32State   fp32 elements, vector loads and stores as the params';
//   Bf16State   bf16 elements, vector loads, stores rounded stochastically with the state's
//               own stream (state_rounding_key), the CPU backend's bits;
//   CodedState  8-bit codes and a per-block absmax (blockwise_quant.h), read only: the
//               metrics kernel. A step requantizes whole blocks at once, which needs the
//               block's threads together (step_coded_chunk in multi_tensor.cuh).
//
// Values are v[k][e]: state buffer k (for_each_state order, plan headers) of element e of
// the group. A buffer the tensor lacks, or the step does not use, reads as 0 and is not
// written. Internal to the CUDA backend.
#include <math.h>

#include <cstdint>

#include "../common/block_reduce.h"  // kReduceVec
#include "../common/blockwise_quant.h"
#include "../common/half_convert.h"
#include "../common/state_dtype.h"
#include "../common/stochastic_rounding.h"
#include "element_access.cuh"

namespace fo::cuda::mt {

// The two dynamic code maps and their midpoints, as the host builds them
// (host_code_map, host_code_midpoints in state_codec.h), in device memory: [0] signed (first
// moments), [1] unsigned. The kernels of a tensor with 8-bit state read them from here.
struct CodeTables {
  float map[2][256];
  float mid[2][256];
};
__host__ __device__ __forceinline__ int code_table(bool is_signed) { return is_signed ? 0 : 1; }

// The state buffers of one tensor as this step uses them: p[k] is null when the tensor has
// no buffer k or the step does not use it (Op::uses_state: AdamW's max_exp_avg_sq without
// amsgrad).
template <class Op>
struct StateBuffers {
  void* p[Op::kStates];
  bool is_signed[Op::kStates];
};

template <class Op>
__device__ __forceinline__ StateBuffers<Op> state_buffers(typename Op::Tensor t, const typename Op::Slot& s) {
  StateBuffers<Op> b{};
  for_each_state(t, [&](int k, void*& buffer, bool is_signed) {
    b.p[k] = Op::uses_state(k, s) ? buffer : nullptr;
    b.is_signed[k] = is_signed;
  });
  return b;
}

// fp32 or bf16 state elements: element j of the group is element first + j of the tensor
// (first: the chunk's first element for dense grads, 0 for row-sparse ones).
template <class Op, StateDType D>
struct ElementState {
  static_assert(D == StateDType::Float32 || D == StateDType::BFloat16, "8-bit state is CodedState");
  static constexpr int kStates = Op::kStates;
  static constexpr DType kElement = D == StateDType::Float32 ? DType::Float32 : DType::BFloat16;
  using Element = storage_t<kElement>;

  Element* p[kStates];
  uint32_t key[kStates];  // bf16: the stochastic rounding stream of buffer k
  int64_t first;

  __device__ ElementState(const StateBuffers<Op>& b, const typename Op::Tensor& t, const typename Op::Slot& s,
                          int64_t first_element)
      : first(first_element) {
#pragma unroll
    for (int k = 0; k < kStates; ++k) {
      p[k] = b.p[k] ? static_cast<Element*>(b.p[k]) + first_element : nullptr;
      key[k] = D == StateDType::BFloat16 ? state_rounding_key(s.rng_key0, s.rng_key1, t.rng_stream, k) : 0u;
    }
  }

  // Vector accesses (kVec = kReduceVec elements) need every buffer aligned to kVec of its
  // elements; null counts as aligned.
  __device__ bool aligned() const {
    bool ok = true;
#pragma unroll
    for (int k = 0; k < kStates; ++k)
      ok = ok && reinterpret_cast<uintptr_t>(p[k]) % (kReduceVec * sizeof(Element)) == 0;
    return ok;
  }

  template <int N, typename J>
  __device__ __forceinline__ void load(J j, float (&v)[kStates][N]) const {
#pragma unroll
    for (int k = 0; k < kStates; ++k) {
      if (p[k]) fo::cuda::load<kElement, N>(p[k] + j, v[k]);
    }
  }

  template <int N, typename J>
  __device__ __forceinline__ void store(J j, const float (&v)[kStates][N]) const {
#pragma unroll
    for (int k = 0; k < kStates; ++k) {
      if (!p[k]) continue;
      if constexpr (D == StateDType::Float32) {
        fo::cuda::store<DType::Float32, N>(p[k] + j, v[k]);
      } else {
        // Element first + j's bits of the buffer's stream, as the CPU's encode_block draws them.
        store_bf16_stochastic<N>(p[k] + j, v[k], key[k], first + int64_t(j));
      }
    }
  }
};

template <class Op>
using Fp32State = ElementState<Op, StateDType::Float32>;
template <class Op>
using Bf16State = ElementState<Op, StateDType::BFloat16>;

// 8-bit state, read only (the metrics kernel): element j of the group dequantized with the
// absmax of its block. Byte loads, so any group is aligned.
template <class Op>
struct CodedState {
  static constexpr int kStates = Op::kStates;

  const uint8_t* codes[kStates];  // from the chunk's first element
  const float* absmax[kStates];   // the tensor's absmax values
  const float* map[kStates];
  int64_t first;
  int64_t block;

  __device__ CodedState(const StateBuffers<Op>& b, const typename Op::Tensor& t, const CodeTables* tables,
                        int64_t first_element)
      : first(first_element), block(t.state.block) {
#pragma unroll
    for (int k = 0; k < kStates; ++k) {
      codes[k] = b.p[k] ? static_cast<const uint8_t*>(b.p[k]) + first_element : nullptr;
      absmax[k] = b.p[k] ? state_absmax(b.p[k], t.numel) : nullptr;
      map[k] = tables->map[code_table(b.is_signed[k])];
    }
  }

  __device__ bool aligned() const { return true; }

  template <int N>
  __device__ __forceinline__ void load(int j, float (&v)[kStates][N]) const {
#pragma unroll
    for (int k = 0; k < kStates; ++k) {
      if (!codes[k]) continue;
#pragma unroll
      for (int e = 0; e < N; ++e) {
        v[k][e] = dequantize_code(map[k], codes[k][j + e], absmax[k][(first + j + e) / block]);
      }
    }
  }
};

// The block absmax as an integer: |x| for every non-NaN x orders as its bits do, and a NaN's
// bits (sign cleared) lie above +inf's, so the unsigned maximum of these bits over a block is
// absmax_add's NaN-propagating maximum, in any order (what lets the block's threads combine
// theirs with atomicMax). Of several distinct NaNs it keeps the largest payload, where the
// CPU keeps the last; both are NaN, and every element of such a block dequantizes to NaN.
__device__ __forceinline__ uint32_t absmax_bits(float x) { return float_bits(fabsf(x)); }

}  // namespace fo::cuda::mt
