#pragma once
// FO_HD marks the functions both backends compile: nvcc sees __host__ __device__,
// the host compiler sees a plain inline function.
#if defined(__CUDACC__)
#define FO_HD __host__ __device__ __forceinline__
#else
#define FO_HD inline __attribute__((always_inline))
#endif
