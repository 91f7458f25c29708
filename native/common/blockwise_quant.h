#pragma once
// 8-bit blockwise state (stateDtype 'uint8'), as bitsandbytes' blockwise optimizers store
// it: the elements of a block of 256 (or 2048) share one fp32 absmax, and each is the index
// of the nearest entry of a 256-entry dynamic code map (dynamic_code_maps.h; signed for
// first moments, unsigned for second moments) to value / absmax.
//
// NOTE(8-bit step): a step dequantizes a block (map[code] * absmax), runs the optimizer's
// fp32 update on every element, takes the new absmax of the block and requantizes; the
// param update uses the fp32 state values, so quantization error enters the next step only
// (as in bitsandbytes). Both backends do exactly this with the functions below, so their
// codes and absmax agree bit for bit.
//
// The code of a normalized value y is defined as the number of code midpoints below it,
// count(mid[c] < y) with mid[c] the fp32 midpoint of map[c] and map[c + 1]: the nearest
// entry, a tie going to the lower one. A NaN gets code 0 (its block's absmax is NaN, so it
// dequantizes to NaN again). Values are normalized by multiplying with 1 / absmax (one
// division per block; bitsandbytes divides each element, which can differ in the last bit
// of y).
#include <math.h>

#include <cstdint>

#include "dynamic_code_maps.h"
#include "half_convert.h"
#include "fo_macros.h"

namespace fo {

// mid[c] for c < 255, and +inf at 255 (a search sentinel that no value exceeds).
FO_HD float code_midpoint(const float* map, int c) {
  return c < 255 ? float((double(map[c]) + double(map[c + 1])) * 0.5) : INFINITY;
}

// count(mid[c] < y) by a branch-free binary search over the 256 midpoints (the last +inf).
FO_HD uint8_t quantize_code(const float* midpoints, float y) {
  int c = 0;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int step = 128; step > 0; step >>= 1) c += (midpoints[c + step - 1] < y) ? step : 0;
  return uint8_t(c);
}

FO_HD float dequantize_code(const float* map, uint8_t code, float absmax) { return map[code] * absmax; }

// The running absmax of a block, on the bit patterns: for non-negative floats the integer
// order is the float order, and every NaN orders above +inf, so a NaN element makes the
// absmax NaN (fmaxf would drop it) and the result does not depend on the order of the
// elements (the CPU's vector max and CUDA's block reduction agree to the bit).
FO_HD uint32_t absmax_bits_add(uint32_t acc, float x) {
  const uint32_t a = float_bits(x) & 0x7fffffffu;
  return a > acc ? a : acc;
}
FO_HD float absmax_add(float acc, float x) { return bits_float(absmax_bits_add(float_bits(acc), x)); }

// The factor a block's values are normalized with before coding: 0 for an all-zero block
// (every element gets the code of 0.0).
FO_HD float quant_scale(float absmax) { return absmax > 0.0f ? 1.0f / absmax : 0.0f; }

// The code map of each state buffer (host memory; CUDA keeps its own copies): first moments
// (exp_avg, momentum) are signed, second moments unsigned.
inline const float* host_code_map(bool is_signed) { return is_signed ? kDynamicMapSigned : kDynamicMapUnsigned; }

}  // namespace fo
