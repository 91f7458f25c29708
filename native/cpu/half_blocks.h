#pragma once
// fp16 <-> fp32 conversion of whole blocks. GCC has no vector type for _Float16 without
// AVX512-FP16, so an element loop over fp16 never vectorizes; converting blocks with F16C
// (vcvtph2ps / vcvtps2ph, round to nearest even: the bits of half_convert.h) lets the update
// loop run on plain floats. CPUs without F16C get the bit conversions.
#include <cstdint>

namespace fo::cpu {

void half_block_to_float(const uint16_t* half, float* out, int64_t n);
void float_block_to_half(const float* values, uint16_t* out, int64_t n);

}  // namespace fo::cpu
