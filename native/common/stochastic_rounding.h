#pragma once
// Stochastic rounding of fp32 masters to bfloat16 params: add 16 random bits below the
// bf16 mantissa and truncate, so E[round(x)] = x and small updates are not lost on
// average. The random bits come from a counter-based hash of (seed, step, tensor, element):
// no state per element, the same bits on every backend and thread count, and a resumed run
// continues the same sequence when the seed and step counter are restored.
#include <cstdint>

#include "fo_macros.h"
#include "half_convert.h"

namespace fo {

// Chris Wellons' lowbias32 integer hash: full avalanche, cheap on CPUs and GPUs.
FO_HD uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// The per-tensor key: hoisted out of the element loop.
FO_HD uint32_t rounding_stream_key(uint32_t key0, uint32_t key1, uint32_t stream) {
  return mix32(key0 ^ mix32(key1 ^ mix32(stream + 0x9e3779b9u)));
}

// The stream of a param's state buffer k when the state is stored as bfloat16: apart from
// the param's own stream, so a bf16 param and its bf16 moments draw unrelated bits.
FO_HD uint32_t state_rounding_key(uint32_t key0, uint32_t key1, uint32_t stream, int k) {
  return rounding_stream_key(key0 ^ (0x6a09e667u + 0x3c6ef372u * uint32_t(k)), key1, stream);
}

FO_HD uint32_t rounding_bits(uint32_t stream_key, int64_t index) {
  const uint64_t i = uint64_t(index);
  return mix32(stream_key ^ mix32(uint32_t(i) ^ mix32(uint32_t(i >> 32) + 0x85ebca6bu)));
}

FO_HD uint16_t float_to_bf16_stochastic(float f, uint32_t random) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7f800000u) == 0x7f800000u) return float_to_bf16_bits(f);  // inf, NaN: as usual
  return uint16_t((u + (random & 0xffffu)) >> 16);
}

}  // namespace fo
