#include "half_blocks.h"

#include "../common/half_convert.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FO_HAVE_F16C_PATH 1
#endif

namespace fo::cpu {

namespace {

#if FO_HAVE_F16C_PATH
__attribute__((target("avx,f16c"))) void to_float_f16c(const uint16_t* __restrict h, float* __restrict f, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    _mm256_storeu_ps(f + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + j))));
  for (; j < n; ++j) f[j] = half_bits_to_float(h[j]);
}

__attribute__((target("avx,f16c"))) void to_half_f16c(const float* __restrict f, uint16_t* __restrict h, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(h + j),
                     _mm256_cvtps_ph(_mm256_loadu_ps(f + j), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; j < n; ++j) h[j] = float_to_half_bits(f[j]);
}

__attribute__((target("avx,f16c"))) void to_half_f16c_stream(const float* __restrict f, uint16_t* __restrict h,
                                                             int64_t n) {
  int64_t j = 0;
  // Scalar until the output is 16-byte aligned, then whole vectors with streaming stores.
  for (; j < n && (reinterpret_cast<uintptr_t>(h + j) & 15) != 0; ++j) h[j] = float_to_half_bits(f[j]);
  for (; j + 8 <= n; j += 8)
    _mm_stream_si128(reinterpret_cast<__m128i*>(h + j),
                     _mm256_cvtps_ph(_mm256_loadu_ps(f + j), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; j < n; ++j) h[j] = float_to_half_bits(f[j]);
}

const bool kHasF16C = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
#else
constexpr bool kHasF16C = false;
#endif

}  // namespace

void half_block_to_float(const uint16_t* half, float* out, int64_t n) {
#if FO_HAVE_F16C_PATH
  if (kHasF16C) return to_float_f16c(half, out, n);
#endif
  for (int64_t j = 0; j < n; ++j) out[j] = half_bits_to_float(half[j]);
}

void float_block_to_half(const float* values, uint16_t* out, int64_t n) {
#if FO_HAVE_F16C_PATH
  if (kHasF16C) return to_half_f16c(values, out, n);
#endif
  for (int64_t j = 0; j < n; ++j) out[j] = float_to_half_bits(values[j]);
}

void float_block_to_half_streaming(const float* values, uint16_t* out, int64_t n) {
#if FO_HAVE_F16C_PATH
  if (kHasF16C) return to_half_f16c_stream(values, out, n);
#endif
  float_block_to_half(values, out, n);
}

void finish_streaming_stores() {
#if FO_HAVE_F16C_PATH
  _mm_sfence();
#endif
}

}  // namespace fo::cpu
