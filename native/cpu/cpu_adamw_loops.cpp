#include "cpu_adamw_loops.h"

#include <cmath>

#include "../common/half_convert.h"

namespace fo::cpu {

namespace {

struct F32 {
  static float load(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
};
// fp16 goes through the compiler's _Float16 where it has one: in the x86-64-v3/v4 clones
// that is F16C's vcvtph2ps/vcvtps2ph (round to nearest even, the same bits as
// half_convert.h); the bit-twiddling fallback serves other compilers.
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

// Flags are template arguments so each loop body is branch-free and vectorizes.
template <typename Grad, bool Amsgrad>
inline __attribute__((always_inline)) void f32_loop(const AdamWTensor& t, const AdamWSlot& s,
                                                    int64_t begin, int64_t end) {
  float* __restrict p = static_cast<float*>(t.param);
  float* __restrict m = t.exp_avg;
  float* __restrict v = t.exp_avg_sq;
  float* __restrict vmax = Amsgrad ? t.max_exp_avg_sq : nullptr;
  float unused = 0.0f;
  for (int64_t i = begin; i < end; ++i) {
    float& vm = Amsgrad ? vmax[i] : unused;
    p[i] = adamw_update(p[i], Grad::load(t.grad, i), m[i], v[i], vm, s);
  }
}

// Half params: the fp32 master (when kept) is updated and the param rewritten from it in
// the same pass; without a master the half value itself is the starting point.
template <typename Param, typename Grad, bool Amsgrad, bool Master>
inline __attribute__((always_inline)) void half_loop(const AdamWTensor& t, const AdamWSlot& s,
                                                     int64_t begin, int64_t end) {
  float* __restrict master = t.master;
  float* __restrict m = t.exp_avg;
  float* __restrict v = t.exp_avg_sq;
  float* __restrict vmax = Amsgrad ? t.max_exp_avg_sq : nullptr;
  float unused = 0.0f;
  for (int64_t i = begin; i < end; ++i) {
    float& vm = Amsgrad ? vmax[i] : unused;
    float w = Master ? master[i] : Param::load(t.param, i);
    float updated = adamw_update(w, Grad::load(t.grad, i), m[i], v[i], vm, s);
    if (Master) master[i] = updated;
    Param::store(t.param, i, updated);
  }
}

template <typename Param, typename Grad>
inline __attribute__((always_inline)) void half_chunk(const AdamWTensor& t, const AdamWSlot& s, int64_t b,
                                                      int64_t e) {
  const bool amsgrad = s.flags & kAdamWAmsgrad;
  if (t.master) {
    if (amsgrad) half_loop<Param, Grad, true, true>(t, s, b, e);
    else half_loop<Param, Grad, false, true>(t, s, b, e);
  } else {
    if (amsgrad) half_loop<Param, Grad, true, false>(t, s, b, e);
    else half_loop<Param, Grad, false, false>(t, s, b, e);
  }
}

}  // namespace

// Runtime dispatch on x86-64 (AVX-512 / AVX2+F16C+FMA-capable / baseline); other
// architectures get one build for their baseline.
#if defined(__x86_64__) && defined(__GNUC__)
#define FO_SIMD_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define FO_SIMD_CLONES
#endif

FO_SIMD_CLONES void adamw_chunk_f32_f32(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e) {
  if (s.flags & kAdamWAmsgrad) f32_loop<F32, true>(t, s, b, e);
  else f32_loop<F32, false>(t, s, b, e);
}

FO_SIMD_CLONES void adamw_chunk_f16_f16(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e) {
  half_chunk<F16, F16>(t, s, b, e);
}

FO_SIMD_CLONES void adamw_chunk_f16_f32(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e) {
  half_chunk<F16, F32>(t, s, b, e);
}

FO_SIMD_CLONES void adamw_chunk_bf16_bf16(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e) {
  half_chunk<BF16, BF16>(t, s, b, e);
}

FO_SIMD_CLONES void adamw_chunk_bf16_f32(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e) {
  half_chunk<BF16, F32>(t, s, b, e);
}

}  // namespace fo::cpu
