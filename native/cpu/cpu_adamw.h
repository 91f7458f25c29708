#pragma once
// The CPU backend of AdamW: loops over one chunk, picked per (param dtype, grad dtype).
#include "../common/adamw_plan.h"
#include "../common/adamw_rule.h"
#include "../common/metrics.h"
#include "chunk_runner.h"

namespace fo::cpu {

struct AdamWKernels {
  // coef: the tensor's clip-by-norm coefficient (1 without a pre-step pass).
  using UpdateFn = void (*)(const AdamWTensor&, const AdamWSlot&, int64_t begin, int64_t end, float coef);
  using MetricsFn = void (*)(const AdamWTensor&, const AdamWSlot&, int64_t begin, int64_t end, MetricSums*);
  static UpdateFn update_fn(DType param, DType grad);
  static MetricsFn metrics_fn(DType param, DType grad);
};

using AdamWRunner = ChunkRunner<AdamWTensor, AdamWSlot, AdamWKernels>;

}  // namespace fo::cpu
