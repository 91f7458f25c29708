// cuda::copy_bandwidth in a binary built without a CUDA compiler: compiled instead of
// cuda_bandwidth.cu, next to cuda_stub.cpp. It always throws, as the rest of the stub does.
#include <stdexcept>

#include "../common/bandwidth.h"

namespace fo::cuda {

BandwidthResult copy_bandwidth(size_t, int) {
  throw std::runtime_error(
      "copyBandwidth: CUDA support was not compiled into this binary (no nvcc found at build time)");
}

}  // namespace fo::cuda
