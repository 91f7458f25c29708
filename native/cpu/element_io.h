#pragma once
// Loads and stores of fp32 / fp16 / bf16 elements as fp32 on the CPU, for the loops of
// every optimizer.
#include <cstdint>

#include "../common/dtype.h"
#include "../common/half_convert.h"
#include "../common/stochastic_rounding.h"

namespace fo::cpu {

struct F32 {
  static float load(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
  static void store(void* p, int64_t i, float v) { static_cast<float*>(p)[i] = v; }
};
// Element-wise fp16 through the compiler's _Float16 (F16C in the x86-64-v3/v4 clones, round
// to nearest even: the bits of half_convert.h). GCC 12 does not vectorize loops over it, so
// dense fp16 tensors go through half_blocks.h instead; this serves the row-sparse path.
#if defined(__FLT16_MAX__)
struct F16 {
  static float load(const void* p, int64_t i) { return float(static_cast<const _Float16*>(p)[i]); }
  static void store(void* p, int64_t i, float v) { static_cast<_Float16*>(p)[i] = _Float16(v); }
};
#else
struct F16 {
  static float load(const void* p, int64_t i) { return half_bits_to_float(static_cast<const uint16_t*>(p)[i]); }
  static void store(void* p, int64_t i, float v) { static_cast<uint16_t*>(p)[i] = float_to_half_bits(v); }
};
#endif
// bfloat16 is the top half of an fp32: shifts, which vectorize everywhere.
struct BF16 {
  static float load(const void* p, int64_t i) { return bf16_bits_to_float(static_cast<const uint16_t*>(p)[i]); }
  static void store(void* p, int64_t i, float v) { static_cast<uint16_t*>(p)[i] = float_to_bf16_bits(v); }
};

// A state buffer as the loops see it: fp32 always (ChunkRunner decodes bf16 and 8-bit state
// into fp32 blocks around them, state_blocks.h).
FO_HD float* fp32_state(void* p) { return static_cast<float*>(p); }

// The five (param dtype, grad dtype) layouts, numbered in the order the loop files list
// their entry points: f32/f32, f16/f16, f16/f32, bf16/bf16, bf16/f32. Grads are fp32 or the
// param's own half type (checked by the engine).
inline int layout_index(DType param, DType grad) {
  if (param == DType::Float32) return 0;
  if (param == DType::Float16) return grad == DType::Float32 ? 2 : 1;
  return grad == DType::Float32 ? 4 : 3;
}

// Writes param element i from its fp32 value: round to nearest even, or for bfloat16 with
// stochastic rounding on (stream_key != 0 marks it), with the element's random bits.
template <typename Param, bool Stochastic>
inline __attribute__((always_inline)) void store_param(void* p, int64_t i, float v, uint32_t stream_key) {
  if constexpr (Stochastic) {
    static_cast<uint16_t*>(p)[i] = float_to_bf16_stochastic(v, rounding_bits(stream_key, i));
  } else {
    (void)stream_key;
    Param::store(p, i, v);
  }
}

// Runtime dispatch on x86-64 (AVX-512 / AVX2+F16C / baseline): one binary for every CPU.
// FO_NO_SIMD_CLONES (the emulator and sanitizer test builds) compiles the baseline only: the
// clones give the same bits (no FMA contraction), and three of each loop under ASan made the
// test build the slowest step of CI.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(FO_NO_SIMD_CLONES)
#define FO_SIMD_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define FO_SIMD_CLONES
#endif

#define FO_INLINE inline __attribute__((always_inline))

}  // namespace fo::cpu
