// native/cuda/cuda_sgd.cu compiled as host C++ against the emulator (see ../include/cuda_runtime.h).
#include "../../../native/cuda/cuda_sgd.cu"
