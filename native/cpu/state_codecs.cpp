// See state_codecs.h. The 8-bit coder finds a code without the 8-step binary search of
// quantize_code: a table indexed by the top 16 bits of the fp32 value (sign, exponent, 7
// mantissa bits) gives the count of midpoints below the smallest value with those bits, and
// one comparison finishes it: no 16-bit bucket of either dynamic map holds more than one
// midpoint (BucketTable checks it when it is built), so the count is the table's or one
// more. The result is quantize_code's for every value.
#include "state_codecs.h"

#include <cstring>
#include <stdexcept>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(FO_NO_SIMD_CLONES)
#include <immintrin.h>
#define FO_HAVE_AVX2_PATH 1
#endif

#include "../common/blockwise_quant.h"
#include "../common/half_convert.h"
#include "../common/state_codec.h"
#include "../common/stochastic_rounding.h"
#include "element_io.h"

namespace fo::cpu {

namespace {

struct BucketTable {
  uint8_t start[(1 << 16) + 4];  // + 4: the AVX2 path gathers 4 bytes at each key
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
      if (key < 4) start[(1u << 16) + key] = 0;
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

#if FO_HAVE_AVX2_PATH
// BucketTable::code for 8 values at a time: the table byte and the midpoint by gathers.
__attribute__((target("avx2"))) int64_t codes_avx2(const BucketTable& t, const float* values, float scale,
                                                   uint8_t* codes, int64_t n) {
  const __m256 s = _mm256_set1_ps(scale);
  const __m256i low_byte = _mm256_set1_epi32(0xff);
  const __m256i to_bytes = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1,
                                            -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 y = _mm256_mul_ps(_mm256_loadu_ps(values + i), s);
    const __m256i key = _mm256_srli_epi32(_mm256_castps_si256(y), 16);
    const __m256i c =
        _mm256_and_si256(_mm256_i32gather_epi32(reinterpret_cast<const int*>(t.start), key, 1), low_byte);
    const __m256 m = _mm256_i32gather_ps(t.mid, c, 4);
    const __m256i below = _mm256_castps_si256(_mm256_cmp_ps(m, y, _CMP_LT_OQ));  // -1 where mid[c] < y
    const __m256i counted = _mm256_sub_epi32(c, below);
    const __m256i ordered = _mm256_castps_si256(_mm256_cmp_ps(y, y, _CMP_ORD_Q));  // 0 for NaN
    const __m256i code = _mm256_shuffle_epi8(_mm256_and_si256(counted, ordered), to_bytes);
    const uint32_t lo = uint32_t(_mm256_extract_epi32(code, 0)), hi = uint32_t(_mm256_extract_epi32(code, 4));
    const uint64_t packed = uint64_t(lo) | uint64_t(hi) << 32;
    std::memcpy(codes + i, &packed, 8);
  }
  return i;
}

__attribute__((target("avx2"))) int64_t decode_q8_avx2(const uint8_t* codes, float absmax, const float* map, float* out,
                                                       int64_t n) {
  const __m256 a = _mm256_set1_ps(absmax);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t packed;
    std::memcpy(&packed, codes + i, 8);
    const __m256i idx = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(packed)));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_i32gather_ps(map, idx, 4), a));
  }
  return i;
}

const bool kHasAvx2 = __builtin_cpu_supports("avx2");
#endif

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
  int64_t i = 0;
#if FO_HAVE_AVX2_PATH
  if (kHasAvx2) i = decode_q8_avx2(codes, absmax, map, out, n);
#endif
  for (; i < n; ++i) out[i] = dequantize_code(map, codes[i], absmax);
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
  int64_t i = 0;
#if FO_HAVE_AVX2_PATH
  if (kHasAvx2) i = codes_avx2(table, values, scale, codes, n);
#endif
  for (; i < n; ++i) codes[i] = table.code(values[i] * scale);
  *absmax = a;
}

}  // namespace fo::cpu
