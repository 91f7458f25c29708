#pragma once
// The CPU side of grad reductions and in-place grad operations: the optimizers' pre-step
// pass (GradScaler inf check, clip-by-norm sums) and the standalone clipGradNorm /
// clipGradValue. Reductions run per chunk on the pool and are summed in chunk order, so
// the results do not depend on the thread count.
#include <cstdint>
#include <vector>

#include "../common/dtype.h"
#include "../common/grad_transform.h"

namespace fo::cpu {

// Sums g * inv_scale over [begin, end) of one grad into *out.
void grad_partial(const void* grad, DType dtype, int64_t begin, int64_t end, float inv_scale, GradPartial* out);

// Per tensor: sum |g|^p, or max |g| when p is infinite (float64, fixed order).
void grad_norm_sums(const std::vector<GradRef>& grads, double norm_type, double* out);
void scale_grads(const std::vector<GradRef>& grads, float coef);
void clamp_grads(const std::vector<GradRef>& grads, float lo, float hi);

}  // namespace fo::cpu
