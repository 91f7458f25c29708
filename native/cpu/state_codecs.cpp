// See state_codecs.h. The 8-bit coder finds a code without the 8-step binary search of
// quantize_code: a table indexed by the top 16 bits of the fp32 value (sign, exponent, 7
// mantissa bits) gives the count of midpoints below the smallest value with those bits, and
// one comparison finishes it: no 16-bit bucket of either dynamic map holds more than one
// midpoint (BucketTable checks it when it is built), so the count is the table's or one
// more. The result is quantize_code's for every value.
#include "state_codecs.h"

#include <stdexcept>

#include "../common/blockwise_quant.h"
#include "../common/half_convert.h"
#include "../common/state_codec.h"
#include "../common/stochastic_rounding.h"
#include "element_io.h"

namespace fo::cpu {

namespace {

struct BucketTable {
  uint8_t start[1 << 16];
  const float* mid;

  explicit BucketTable(bool is_signed) : mid(host_code_midpoints(is_signed)) {
    for (uint32_t key = 0; key < (1u << 16); ++key) {
      const bool negative = key >> 15;
      // The smallest and largest values in the bucket (its first and last bits, swapped when
      // negative); a NaN end (exponent 255) stands for -inf / +inf.
      float lowest = bits_float(negative ? (key << 16) | 0xffffu : key << 16);
      float highest = bits_float(negative ? key << 16 : (key << 16) | 0xffffu);
      if (lowest != lowest) lowest = negative ? -INFINITY : INFINITY;
      if (highest != highest) highest = negative ? -INFINITY : INFINITY;
      start[key] = quantize_code(mid, lowest);
      if (quantize_code(mid, highest) > start[key] + 1)
        throw std::logic_error("8-bit code table: a bucket holds two midpoints");  // not with these maps
    }
  }

  uint8_t code(float y) const {
    const uint32_t c = start[float_bits(y) >> 16];
    const uint32_t counted = c + (mid[c] < y ? 1u : 0u);
    return uint8_t(y == y ? counted : 0u);
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
  uint32_t bits = 0;  // absmax_bits_add, written out so that it vectorizes
  const uint32_t* raw = reinterpret_cast<const uint32_t*>(values);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t m = raw[i] & 0x7fffffffu;
    bits = m > bits ? m : bits;
  }
  const float a = bits_float(bits);
  const float scale = quant_scale(a);
  const BucketTable& table = bucket_table(is_signed);
  // Scalar: AVX2 gathers of the table and the midpoints measured slower on Zen (168 against
  // 152 ms per step of 16M params, one thread).
  for (int64_t i = 0; i < n; ++i) codes[i] = table.code(values[i] * scale);
  *absmax = a;
}

}  // namespace fo::cpu
