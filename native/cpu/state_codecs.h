#pragma once
// The CPU's coders of bf16 and 8-bit state blocks (state_blocks.h), compiled for several
// x86-64 levels (FO_SIMD_CLONES) in state_codecs.cpp. Each gives the bits of the shared
// rules (native/common/blockwise_quant.h, stochastic_rounding.h).
#include <cstdint>

namespace fo::cpu {

void decode_bf16(const uint16_t* bits, float* out, int64_t n);
// Element i is element first + i of its tensor (its random bits).
void encode_bf16_stochastic(const float* values, uint16_t* bits, int64_t n, uint32_t key, int64_t first);
void decode_q8(const uint8_t* codes, float absmax, bool is_signed, float* out, int64_t n);
// A block's codes and its new absmax.
void encode_q8(const float* values, int64_t n, bool is_signed, uint8_t* codes, float* absmax);

}  // namespace fo::cpu
