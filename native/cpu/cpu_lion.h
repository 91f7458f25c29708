#pragma once
// The CPU backend of Lion: loops over one chunk, picked per (param dtype, grad dtype).
#include "../common/lion_plan.h"
#include "../common/lion_rule.h"
#include "../common/metrics.h"
#include "chunk_runner.h"

namespace fo::cpu {

struct LionKernels {
  // coef: the tensor's clip-by-norm coefficient (1 without a pre-step pass).
  using UpdateFn = void (*)(const LionTensor&, const LionSlot&, int64_t begin, int64_t end, float coef);
  using MetricsFn = void (*)(const LionTensor&, const LionSlot&, int64_t begin, int64_t end, MetricSums*);
  static UpdateFn update_fn(DType param, DType grad);
  static MetricsFn metrics_fn(DType param, DType grad);
};

using LionRunner = ChunkRunner<LionTensor, LionSlot, LionKernels>;

}  // namespace fo::cpu
