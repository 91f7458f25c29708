#pragma once
// The CUDA host emulator's <cuda_runtime.h>: what the CUDA language and runtime provide to
// native/cuda, so that its unmodified sources compile as host C++ and their kernels run on
// the CPU under the test suites and sanitizers. Test infrastructure only: never shipped,
// never used for releases. What it proves and what it cannot: docs/cuda-emulator.md.
#include "cuda_emu/language.h"
#include "cuda_emu/runtime_api.h"
#include "cuda_emu/launch.h"
