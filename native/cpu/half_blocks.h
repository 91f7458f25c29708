#pragma once
// fp16 <-> fp32 conversion of whole blocks. GCC has no vector type for _Float16 without
// AVX512-FP16, so an element loop over fp16 never vectorizes; converting blocks with F16C
// (vcvtph2ps / vcvtps2ph, round to nearest even: the bits of half_convert.h) lets the update
// loop run on plain floats. CPUs without F16C get the bit conversions.
#include <cstdint>

namespace fo::cpu {

void half_block_to_float(const uint16_t* half, float* out, int64_t n);
void float_block_to_half(const float* values, uint16_t* out, int64_t n);
// The same for an output nothing reads back soon (a half param rewritten from its master):
// non-temporal stores where aligned, so the write does not first read the line into the
// cache. Call finish_streaming_stores() before the work is handed to another thread.
void float_block_to_half_streaming(const float* values, uint16_t* out, int64_t n);
void finish_streaming_stores();

}  // namespace fo::cpu
