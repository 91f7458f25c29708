#include "cpu_adamw_loops.h"

#include <cmath>

#include "../common/half_convert.h"

namespace fo::cpu {

namespace {

struct LoadF32 {
  static float load(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
};
// fp16 goes through the compiler's _Float16 where it has one: in the x86-64-v3/v4 clones
// that is F16C's vcvtph2ps/vcvtps2ph (round to nearest even, the same bits as
// half_convert.h), and it vectorizes; the bit-twiddling fallback does not.
#if defined(__FLT16_MAX__)
struct LoadF16 {
  static float load(const void* p, int64_t i) { return float(static_cast<const _Float16*>(p)[i]); }
};
struct StoreF16 {
  static void store(void* p, int64_t i, float v) { static_cast<_Float16*>(p)[i] = _Float16(v); }
};
#else
struct LoadF16 {
  static float load(const void* p, int64_t i) {
    return half_bits_to_float(static_cast<const uint16_t*>(p)[i]);
  }
};
struct StoreF16 {
  static void store(void* p, int64_t i, float v) { static_cast<uint16_t*>(p)[i] = float_to_half_bits(v); }
};
#endif
struct LoadBF16 {
  static float load(const void* p, int64_t i) {
    return bf16_bits_to_float(static_cast<const uint16_t*>(p)[i]);
  }
};
struct StoreBF16 {
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

template <typename Grad, typename Store, bool Amsgrad>
inline __attribute__((always_inline)) void master_loop(const AdamWTensor& t, const AdamWSlot& s,
                                                       int64_t begin, int64_t end) {
  float* __restrict master = t.master;
  float* __restrict m = t.exp_avg;
  float* __restrict v = t.exp_avg_sq;
  float* __restrict vmax = Amsgrad ? t.max_exp_avg_sq : nullptr;
  float unused = 0.0f;
  for (int64_t i = begin; i < end; ++i) {
    float& vm = Amsgrad ? vmax[i] : unused;
    float updated = adamw_update(master[i], Grad::load(t.grad, i), m[i], v[i], vm, s);
    master[i] = updated;
    Store::store(t.param, i, updated);
  }
}

}  // namespace

#define FO_SIMD_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))

FO_SIMD_CLONES void adamw_chunk_f32_f32(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e) {
  if (s.flags & kAdamWAmsgrad) f32_loop<LoadF32, true>(t, s, b, e);
  else f32_loop<LoadF32, false>(t, s, b, e);
}

FO_SIMD_CLONES void adamw_chunk_f16_f16(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e) {
  if (s.flags & kAdamWAmsgrad) master_loop<LoadF16, StoreF16, true>(t, s, b, e);
  else master_loop<LoadF16, StoreF16, false>(t, s, b, e);
}

FO_SIMD_CLONES void adamw_chunk_f16_f32(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e) {
  if (s.flags & kAdamWAmsgrad) master_loop<LoadF32, StoreF16, true>(t, s, b, e);
  else master_loop<LoadF32, StoreF16, false>(t, s, b, e);
}

FO_SIMD_CLONES void adamw_chunk_bf16_bf16(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e) {
  if (s.flags & kAdamWAmsgrad) master_loop<LoadBF16, StoreBF16, true>(t, s, b, e);
  else master_loop<LoadBF16, StoreBF16, false>(t, s, b, e);
}

FO_SIMD_CLONES void adamw_chunk_bf16_f32(const AdamWTensor& t, const AdamWSlot& s, int64_t b, int64_t e) {
  if (s.flags & kAdamWAmsgrad) master_loop<LoadF32, StoreBF16, true>(t, s, b, e);
  else master_loop<LoadF32, StoreBF16, false>(t, s, b, e);
}

}  // namespace fo::cpu
