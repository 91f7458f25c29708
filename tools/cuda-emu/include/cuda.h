#pragma once
// The emulator's <cuda.h>: the driver API types for the driver calls that native/cuda reaches
// through cudaGetDriverEntryPointByVersion (cuMemGetAddressRange); no driver call is linked.
using CUdeviceptr = unsigned long long;
enum CUresult : int {
  CUDA_SUCCESS = 0,
  CUDA_ERROR_INVALID_VALUE = 1,
  CUDA_ERROR_NOT_FOUND = 500,
};
