#pragma once
// Standalone grad operations for clipGradNorm / clipGradValue: validated here, run by the
// backend of the tensors' device.
#include <memory>
#include <vector>

#include "tensor.h"

namespace fo {

// Per tensor: sum |g|^p, or max |g| for p = inf (float64, deterministic).
std::vector<double> grad_norm_sums(const std::vector<std::shared_ptr<Tensor>>& grads, double norm_type);
void scale_grads(const std::vector<std::shared_ptr<Tensor>>& grads, float coef);
void clamp_grads(const std::vector<std::shared_ptr<Tensor>>& grads, float lo, float hi);

}  // namespace fo
