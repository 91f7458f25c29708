#pragma once
// The dtype optimizer state is stored in (an optimizer's stateDtype option, per param group):
// fp32, bfloat16 (updated in fp32, rounded back stochastically) or 8-bit blockwise
// quantized codes (bitsandbytes' dynamic map, one fp32 absmax per block of elements). The
// update math always runs in fp32; only the bytes between steps change. docs/state-dtypes.md
// explains the choice; native/common/blockwise_quant.h the 8-bit format.
#include <cstddef>
#include <cstdint>

#include "fo_macros.h"

namespace fo {

// The numeric values are part of the addon ABI: TypeScript passes them as integers.
enum class StateDType : int32_t { Float32 = 0, BFloat16 = 1, Uint8 = 2 };
inline constexpr const char* kStateDTypeNames[] = {"float32", "bfloat16", "uint8"};

inline bool state_dtype_from_int(int32_t v, StateDType* out) {
  if (v < 0 || v > 2) return false;
  *out = static_cast<StateDType>(v);
  return true;
}

// 8-bit blocks: elements per absmax. bitsandbytes' blockwise optimizers use 256 (earlier
// releases 2048); both divide the 64K-element chunk (kChunkElements), so no block straddles
// two chunks or two CUDA blocks.
inline constexpr int32_t kQuantBlockSizes[] = {256, 2048};
inline constexpr int32_t kDefaultQuantBlock = 256;
inline bool valid_quant_block(int64_t b) { return b == 256 || b == 2048; }
// Tensors below this many elements keep fp32 state under stateDtype 'uint8' (bitsandbytes'
// min_8bit_size): their state is small, and a block's shared scale costs them the most.
inline constexpr int64_t kMinQuantizedNumel = 4096;

// The dtype a param of n elements stores its state in when its group asks for `wanted`.
inline StateDType effective_state_dtype(StateDType wanted, int64_t n) {
  return wanted == StateDType::Uint8 && n < kMinQuantizedNumel ? StateDType::Float32 : wanted;
}

// One state buffer of n elements, as the engine allocates it: fp32 or bf16 elements; or n
// codes, padded to 64 bytes, then ceil(n / block) fp32 absmax values.
FO_HD int64_t quant_blocks(int64_t n, int64_t block) { return (n + block - 1) / block; }
FO_HD int64_t absmax_offset(int64_t n) { return (n + 63) / 64 * 64; }
inline int64_t state_buffer_bytes(StateDType d, int64_t n, int64_t block) {
  switch (d) {
    case StateDType::Float32:
      return 4 * n;
    case StateDType::BFloat16:
      return 2 * n;
    case StateDType::Uint8:
      return absmax_offset(n) + 4 * quant_blocks(n, block);
  }
  return 4 * n;
}
// The absmax values of an 8-bit state buffer of n elements.
FO_HD float* state_absmax(void* buffer, int64_t n) {
  return reinterpret_cast<float*>(static_cast<unsigned char*>(buffer) + absmax_offset(n));
}
FO_HD const float* state_absmax(const void* buffer, int64_t n) {
  return reinterpret_cast<const float*>(static_cast<const unsigned char*>(buffer) + absmax_offset(n));
}

// Where a plan entry's state lives and how it is encoded (every state buffer of the entry
// shares the dtype and block size).
struct StateFormat {
  StateDType dtype = StateDType::Float32;
  int32_t block = kDefaultQuantBlock;  // Uint8 only
};

inline int64_t state_buffer_bytes(const StateFormat& f, int64_t n) { return state_buffer_bytes(f.dtype, n, f.block); }

}  // namespace fo
