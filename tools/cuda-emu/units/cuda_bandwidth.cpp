// native/cuda/cuda_bandwidth.cu compiled as host C++ against the emulator (see ../include/cuda_runtime.h).
#include "../../../native/cuda/cuda_bandwidth.cu"
