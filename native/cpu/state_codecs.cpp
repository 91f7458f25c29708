// See state_codecs.h. The 8-bit coder finds a code without the 8-step binary search of
// quantize_code: a table indexed by the top 15 bits of the fp32 value (sign, exponent, 6
// mantissa bits) gives the count of midpoints below the smallest value with those bits, and
// a short walk up the midpoints finishes the count. The dynamic maps are dense enough that a
// 15-bit bucket holds at most 3 midpoints, so the walk is short; its result is the count of
// quantize_code exactly, for every value (the midpoints are ascending and the walk stops at
// the first midpoint >= y; +inf at 255 ends it).
#include "state_codecs.h"

#include "../common/blockwise_quant.h"
#include "../common/half_convert.h"
#include "../common/state_codec.h"
#include "../common/stochastic_rounding.h"
#include "element_io.h"

namespace fo::cpu {

namespace {

struct BucketTable {
  uint8_t start[1 << 15];
  const float* mid;

  explicit BucketTable(bool is_signed) : mid(host_code_midpoints(is_signed)) {
    for (uint32_t key = 0; key < (1u << 15); ++key) {
      const bool negative = key >> 14;
      // The smallest value in the bucket: its first bits when positive, its last when
      // negative; a NaN end (exponent 255) stands for -inf / +inf.
      float lowest = bits_float(negative ? (key << 17) | 0x1ffffu : key << 17);
      if (lowest != lowest) lowest = negative ? -INFINITY : INFINITY;
      start[key] = quantize_code(mid, lowest);
    }
  }

  uint8_t code(float y) const {
    if (y != y) return 0;
    uint32_t c = start[float_bits(y) >> 17];
    while (mid[c] < y) ++c;
    return uint8_t(c);
  }
};

const BucketTable& bucket_table(bool is_signed) {
  static const BucketTable signed_table(true), unsigned_table(false);
  return is_signed ? signed_table : unsigned_table;
}

}  // namespace

FO_SIMD_CLONES void decode_bf16(const uint16_t* bits, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_bits_to_float(bits[i]);
}

FO_SIMD_CLONES void encode_bf16_stochastic(const float* values, uint16_t* bits, int64_t n, uint32_t key,
                                           int64_t first) {
  // rounding_bits with its hash of the index's top half hoisted (blocks never cross 2^32).
  const uint64_t top = uint64_t(first) >> 32;
  if (n == 0 || top != (uint64_t(first + n - 1) >> 32)) {
    for (int64_t i = 0; i < n; ++i) bits[i] = float_to_bf16_stochastic(values[i], rounding_bits(key, first + i));
    return;
  }
  const uint32_t high = mix32(uint32_t(top) + 0x85ebca6bu);
  const uint32_t low = uint32_t(first);
  for (int64_t i = 0; i < n; ++i)
    bits[i] = float_to_bf16_stochastic(values[i], mix32(key ^ mix32((low + uint32_t(i)) ^ high)));
}

FO_SIMD_CLONES void decode_q8(const uint8_t* codes, float absmax, bool is_signed, float* out, int64_t n) {
  const float* map = host_code_map(is_signed);
  for (int64_t i = 0; i < n; ++i) out[i] = dequantize_code(map, codes[i], absmax);
}

FO_SIMD_CLONES void encode_q8(const float* values, int64_t n, bool is_signed, uint8_t* codes, float* absmax) {
  float a = 0.0f;
  for (int64_t i = 0; i < n; ++i) a = absmax_add(a, values[i]);
  const float scale = quant_scale(a);
  const BucketTable& table = bucket_table(is_signed);
  for (int64_t i = 0; i < n; ++i) codes[i] = table.code(values[i] * scale);
  *absmax = a;
}

}  // namespace fo::cpu
