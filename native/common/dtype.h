#pragma once
#include <cstddef>
#include <cstdint>

namespace fo {

// The numeric values are part of the addon ABI: TypeScript passes them as integers.
enum class DType : int32_t { Float32 = 0, Float16 = 1, BFloat16 = 2 };
// Their names by code (dtype_name); exported in native().layouts.
inline constexpr const char* kDTypeNames[] = {"float32", "float16", "bfloat16"};

inline size_t dtype_size(DType t) { return t == DType::Float32 ? 4 : 2; }

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32:
      return "float32";
    case DType::Float16:
      return "float16";
    case DType::BFloat16:
      return "bfloat16";
  }
  return "unknown";
}

inline bool dtype_from_int(int32_t v, DType* out) {
  if (v < 0 || v > 2) return false;
  *out = static_cast<DType>(v);
  return true;
}

}  // namespace fo
