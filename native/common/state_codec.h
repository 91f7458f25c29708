#pragma once
// Host-side conversions of whole state buffers between fp32 values and a StateFormat: what
// a state dict asks for as fp32, and what a state saved in one dtype becomes in an optimizer
// that keeps another. Steps never come here: they code each block in the same pass as the
// update (NOTE(8-bit step), blockwise_quant.h). bfloat16 is rounded to nearest even here
// (a conversion is not a step and draws no random bits).
#include <cstdint>
#include <cstring>

#include "blockwise_quant.h"
#include "half_convert.h"
#include "state_dtype.h"

namespace fo {

// The 256 midpoints of a code map (the last +inf), built once.
inline const float* host_code_midpoints(bool is_signed) {
  struct Table {
    float mid[256];
    explicit Table(const float* map) {
      for (int c = 0; c < 256; ++c) mid[c] = code_midpoint(map, c);
    }
  };
  static const Table signed_table(kDynamicMapSigned), unsigned_table(kDynamicMapUnsigned);
  return is_signed ? signed_table.mid : unsigned_table.mid;
}

// Codes and absmax of one block of n values (n <= the block size).
inline void quantize_block(const float* values, int64_t n, bool is_signed, uint8_t* codes, float* absmax) {
  float a = 0.0f;
  for (int64_t i = 0; i < n; ++i) a = absmax_add(a, values[i]);
  const float scale = quant_scale(a);
  const float* mid = host_code_midpoints(is_signed);
  for (int64_t i = 0; i < n; ++i) codes[i] = quantize_code(mid, values[i] * scale);
  *absmax = a;
}

inline void decode_state(const StateFormat& f, const void* buffer, int64_t n, bool is_signed, float* out) {
  switch (f.dtype) {
    case StateDType::Float32:
      std::memcpy(out, buffer, size_t(n) * 4);
      return;
    case StateDType::BFloat16: {
      const uint16_t* b = static_cast<const uint16_t*>(buffer);
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_bits_to_float(b[i]);
      return;
    }
    case StateDType::Uint8: {
      const uint8_t* codes = static_cast<const uint8_t*>(buffer);
      const float* absmax = state_absmax(buffer, n);
      const float* map = host_code_map(is_signed);
      for (int64_t i = 0; i < n; ++i) out[i] = dequantize_code(map, codes[i], absmax[i / f.block]);
      return;
    }
  }
}

// Writes the whole buffer (the padding between codes and absmax included: zeros).
inline void encode_state(const StateFormat& f, const float* values, int64_t n, bool is_signed, void* buffer) {
  switch (f.dtype) {
    case StateDType::Float32:
      std::memcpy(buffer, values, size_t(n) * 4);
      return;
    case StateDType::BFloat16: {
      uint16_t* b = static_cast<uint16_t*>(buffer);
      for (int64_t i = 0; i < n; ++i) b[i] = float_to_bf16_bits(values[i]);
      return;
    }
    case StateDType::Uint8: {
      uint8_t* codes = static_cast<uint8_t*>(buffer);
      std::memset(codes + n, 0, size_t(absmax_offset(n) - n));
      float* absmax = state_absmax(buffer, n);
      for (int64_t b = 0; b * f.block < n; ++b) {
        const int64_t begin = b * f.block;
        const int64_t len = n - begin < f.block ? n - begin : f.block;
        quantize_block(values + begin, len, is_signed, codes + begin, absmax + b);
      }
      return;
    }
  }
}

}  // namespace fo
