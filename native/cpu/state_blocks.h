#pragma once
// bf16 and 8-bit optimizer state on the CPU: the algorithm's fp32 loops run unchanged on a
// block of decoded state, which is encoded back after them (NOTE(8-bit step),
// blockwise_quant.h). Blocks are an 8-bit block (its absmax covers exactly the block) or
// 2048 elements of bf16 state: small enough to stay in L1 between the passes. Internal to
// the CPU backend (ChunkRunner).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../common/blockwise_quant.h"
#include "../common/half_convert.h"
#include "../common/state_codec.h"
#include "../common/state_dtype.h"
#include "../common/stochastic_rounding.h"
#include "state_codecs.h"

namespace fo::cpu {

constexpr int64_t kStateBlockMax = 2048;  // the largest 8-bit block; bf16 blocks

// A pointer p such that p[j] is buffer[j - first]: the loops index state by the tensor's
// element index. Integer arithmetic: the pointer itself is only dereferenced in range.
inline void* rebased(float* buffer, int64_t first) {
  return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(buffer) - uintptr_t(first) * sizeof(float));
}

// Elements [b, e) of one state buffer of a tensor of n elements, decoded to out[0, e - b).
inline void decode_block(const StateFormat& f, const void* buffer, int64_t n, bool is_signed, int64_t b, int64_t e,
                         float* out) {
  if (f.dtype == StateDType::BFloat16)
    decode_bf16(static_cast<const uint16_t*>(buffer) + b, out, e - b);
  else
    decode_q8(static_cast<const uint8_t*>(buffer) + b, state_absmax(buffer, n)[b / f.block], is_signed, out, e - b);
}

// The inverse: bf16 rounded stochastically with the state's own stream (key), element j's
// bits drawn for element index j; 8-bit requantized with the block's new absmax.
inline void encode_block(const StateFormat& f, void* buffer, int64_t n, bool is_signed, int64_t b, int64_t e,
                         const float* values, uint32_t key) {
  if (f.dtype == StateDType::BFloat16)
    encode_bf16_stochastic(values, static_cast<uint16_t*>(buffer) + b, e - b, key, b);
  else
    encode_q8(values, e - b, is_signed, static_cast<uint8_t*>(buffer) + b, state_absmax(buffer, n) + b / f.block);
}

// Runs run(view, sb, se) over [b, e) in state blocks, view being t with its state buffers
// replaced by decoded fp32 blocks; writes the blocks back when `write` (a step, not metrics).
// b is a multiple of the 8-bit block (a chunk's start), so blocks align with absmax entries.
template <class T, class Slot, class Run>
void with_decoded_state(const T& t, const Slot& s, int64_t b, int64_t e, bool write, const Run& run) {
  const int64_t step = t.state.dtype == StateDType::Uint8 ? int64_t(t.state.block) : kStateBlockMax;
  alignas(64) float blocks[3][kStateBlockMax];
  for (int64_t sb = b; sb < e; sb += step) {
    const int64_t se = std::min(sb + step, e);
    T view = t;
    for_each_state(view, [&](int k, void*& buffer, bool is_signed) {
      if (!buffer) return;
      decode_block(t.state, buffer, t.numel, is_signed, sb, se, blocks[k]);
      buffer = rebased(blocks[k], sb);
    });
    run(view, sb, se);
    if (!write) continue;
    T original = t;
    for_each_state(original, [&](int k, void*& buffer, bool is_signed) {
      if (!buffer) return;
      const uint32_t key = state_rounding_key(s.rng_key0, s.rng_key1, t.rng_stream, k);
      encode_block(t.state, buffer, t.numel, is_signed, sb, se, blocks[k], key);
    });
  }
}

// Metrics read state over a whole chunk at once (one reduction, in the order the F32 path
// and CUDA use): t with its state buffers decoded into `scratch` for [b, e).
template <class T>
T decoded_chunk(const T& t, int64_t b, int64_t e, std::vector<float> (&scratch)[3]) {
  T view = t;
  for_each_state(view, [&](int k, void*& buffer, bool is_signed) {
    if (!buffer) return;
    scratch[k].resize(size_t(e - b));
    const int64_t step = t.state.dtype == StateDType::Uint8 ? int64_t(t.state.block) : kStateBlockMax;
    for (int64_t sb = b; sb < e; sb += step)
      decode_block(t.state, buffer, t.numel, is_signed, sb, std::min(sb + step, e), scratch[k].data() + (sb - b));
    buffer = rebased(scratch[k].data(), b);
  });
  return view;
}

}  // namespace fo::cpu
