#pragma once
// Loads and stores of fp32 / fp16 / bf16 elements as fp32 values, one element or a vector
// of 4. Half types travel as raw 16-bit words and go through native/common/half_convert.h,
// never through cuda_fp16 intrinsics, so the rounding is bit-identical to the CPU backend.
#include <cstdint>
#include "../common/dtype.h"
#include "../common/half_convert.h"
#include "../common/stochastic_rounding.h"

namespace fo::cuda {

// The storage type of one element.
template <DType D>
struct Storage {
  using type = uint16_t;
};
template <>
struct Storage<DType::Float32> {
  using type = float;
};
template <DType D>
using storage_t = typename Storage<D>::type;

template <DType D>
__device__ __forceinline__ float to_float(storage_t<D> x) {
  if constexpr (D == DType::Float32)
    return x;
  else if constexpr (D == DType::Float16)
    return half_bits_to_float(x);
  else
    return bf16_bits_to_float(x);
}

template <DType D>
__device__ __forceinline__ storage_t<D> from_float(float x) {
  if constexpr (D == DType::Float32)
    return x;
  else if constexpr (D == DType::Float16)
    return float_to_half_bits(x);
  else
    return float_to_bf16_bits(x);
}

// N is 1 or 4. With N == 4, p must be aligned to 4 elements (16 bytes for fp32, 8 bytes for
// 16-bit types) so the access compiles to one vector instruction.
template <DType D, int N>
__device__ __forceinline__ void load(const storage_t<D>* p, float (&out)[N]) {
  static_assert(N == 1 || N == 4, "vector width");
  if constexpr (N == 1) {
    out[0] = to_float<D>(p[0]);
  } else if constexpr (D == DType::Float32) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    out[0] = v.x;
    out[1] = v.y;
    out[2] = v.z;
    out[3] = v.w;
  } else {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    out[0] = to_float<D>(uint16_t(v.x));
    out[1] = to_float<D>(uint16_t(v.x >> 16));
    out[2] = to_float<D>(uint16_t(v.y));
    out[3] = to_float<D>(uint16_t(v.y >> 16));
  }
}

template <DType D, int N>
__device__ __forceinline__ void store(storage_t<D>* p, const float (&in)[N]) {
  static_assert(N == 1 || N == 4, "vector width");
  if constexpr (N == 1) {
    p[0] = from_float<D>(in[0]);
  } else if constexpr (D == DType::Float32) {
    *reinterpret_cast<float4*>(p) = make_float4(in[0], in[1], in[2], in[3]);
  } else {
    uint2 v;
    v.x = uint32_t(from_float<D>(in[0])) | (uint32_t(from_float<D>(in[1])) << 16);
    v.y = uint32_t(from_float<D>(in[2])) | (uint32_t(from_float<D>(in[3])) << 16);
    *reinterpret_cast<uint2*>(p) = v;
  }
}

// Stores in[0..N) as bf16 with stochastic rounding: element k gets the random bits of index
// `index + k` of its tensor's stream (rounding_bits), so the result depends on the element's
// position in the tensor only, never on the vector width. Same alignment rule as store.
template <int N>
__device__ __forceinline__ void store_bf16_stochastic(uint16_t* p, const float (&in)[N], uint32_t stream_key,
                                                      int64_t index) {
  static_assert(N == 1 || N == 4, "vector width");
  uint16_t h[N];
#pragma unroll
  for (int k = 0; k < N; ++k) {
    h[k] = float_to_bf16_stochastic(in[k], rounding_bits(stream_key, index + k));
  }
  if constexpr (N == 1) {
    p[0] = h[0];
  } else {
    uint2 v;
    v.x = uint32_t(h[0]) | (uint32_t(h[1]) << 16);
    v.y = uint32_t(h[2]) | (uint32_t(h[3]) << 16);
    *reinterpret_cast<uint2*>(p) = v;
  }
}

}  // namespace fo::cuda
