// native/cuda/cuda_memory.cu compiled as host C++ against the emulator (see ../include/cuda_runtime.h).
#include "../../../native/cuda/cuda_memory.cu"
