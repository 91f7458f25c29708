#pragma once
// The CUDA language as host C++: qualifiers, built-in variables, vector types, barriers,
// atomics and the intrinsics the kernels use. Kernels become plain functions run once per
// emulated thread by the launch (launch.h, src/executor.cpp).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <math.h>
#include <type_traits>

// The device side of `#if __CUDA_ARCH__` blocks is the one compiled (and so tested).
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ 900
#endif
#ifndef __CUDACC__
#define __CUDACC__ 1
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __align__(n) __attribute__((aligned(n)))
// Not checkable here: an attribute cannot carry the bound to the launch (see the docs).
#define __launch_bounds__(...)
// Block-shared memory: one object for the whole launch (blocks run one after another),
// placed in a section of its own so the executor can poison it before every block: a read
// of shared memory that no thread of this block wrote sees NaN / all-ones garbage.
#define __shared__ static __attribute__((section("cuda_emu_shared")))

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

namespace cuda_emu {

// The built-in variables of the emulated thread running on this host thread (a fiber's, in
// fiber mode). Set by the executor; read through threadIdx and friends.
struct ThreadCoords {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};
const ThreadCoords& coords();

// Barriers of the current block; `site` tells barriers apart (a divergent barrier is an
// error). The predicate forms return the block-wide result.
void syncthreads(const void* site);
int syncthreads_reduce(const void* site, int predicate, int op);  // op: 0 or, 1 and, 2 count

}  // namespace cuda_emu

#define threadIdx (::cuda_emu::coords().thread_idx)
#define blockIdx (::cuda_emu::coords().block_idx)
#define blockDim (::cuda_emu::coords().block_dim)
#define gridDim (::cuda_emu::coords().grid_dim)
constexpr int warpSize = 32;

#define __syncthreads() ::cuda_emu::syncthreads(__FILE__ ":" FO_EMU_STR(__LINE__))
#define __syncthreads_or(p) ::cuda_emu::syncthreads_reduce(__FILE__ ":" FO_EMU_STR(__LINE__), (p), 0)
#define __syncthreads_and(p) ::cuda_emu::syncthreads_reduce(__FILE__ ":" FO_EMU_STR(__LINE__), (p), 1)
#define __syncthreads_count(p) ::cuda_emu::syncthreads_reduce(__FILE__ ":" FO_EMU_STR(__LINE__), (p), 2)
#define FO_EMU_STR_(x) #x
#define FO_EMU_STR(x) FO_EMU_STR_(x)

// Vector types with CUDA's sizes and alignments: a misaligned vector access is undefined
// behaviour here as on the GPU, and UBSan's alignment check reports it.
struct __align__(8) float2 {
  float x, y;
};
struct __align__(16) float4 {
  float x, y, z, w;
};
struct __align__(8) int2 {
  int x, y;
};
struct __align__(16) int4 {
  int x, y, z, w;
};
struct __align__(8) uint2 {
  unsigned x, y;
};
struct __align__(16) uint4 {
  unsigned x, y, z, w;
};
struct __align__(16) double2 {
  double x, y;
};

inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline double2 make_double2(double x, double y) { return double2{x, y}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }

// Reinterpretations.
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline int __float_as_int(float f) { return int(__float_as_uint(f)); }
inline float __int_as_float(int i) { return __uint_as_float(unsigned(i)); }
inline long long __double_as_longlong(double d) {
  long long v;
  std::memcpy(&v, &d, 8);
  return v;
}
inline double __longlong_as_double(long long v) {
  double d;
  std::memcpy(&d, &v, 8);
  return d;
}

// Loads through the read-only cache: a plain load.
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

// Atomics: real atomic operations, so thread mode (real threads) is correct too.
template <typename T>
inline T atomicAdd(T* p, T v) {
  if constexpr (std::is_floating_point<T>::value) {
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(p, &old, T(old + v), false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
    }
    return old;
  } else {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
  }
}
template <typename T>
inline T atomicSub(T* p, T v) {
  return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST);
}
template <typename T>
inline T atomicOr(T* p, T v) {
  return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);
}
template <typename T>
inline T atomicAnd(T* p, T v) {
  return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST);
}
template <typename T>
inline T atomicExch(T* p, T v) {
  return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
template <typename T>
inline T atomicCAS(T* p, T compare, T v) {
  __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;
}
template <typename T>
inline T atomicMax(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <typename T>
inline T atomicMin(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
  }
  return old;
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
