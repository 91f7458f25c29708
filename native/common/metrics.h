#pragma once
// Per-parameter optimizer metrics (llm-foundry's DecoupledLionW metric set, for every
// optimizer): sums accumulated in float64 in one pass, reduced in the fixed order of
// NOTE(deterministic reductions) (block_reduce.h), so the same inputs give the same bits.
#include "adamw_rule.h"
#include "fo_macros.h"
#include "lion_rule.h"

namespace fo {

// The six sums behind l2_norm/{moment,param,update,grad} and cosine/{update,moment}_grad.
// "update" is what step() would subtract from the param now: p - rule(p, g, state).
struct MetricSums {
  double moment_sq = 0, param_sq = 0, update_sq = 0, grad_sq = 0;
  double update_dot_grad = 0, moment_dot_grad = 0;

  // A metrics row as the addon returns it: the param's index, then the sums in this order
  // (exported in native().layouts; src/metrics.ts reads them by these names).
  static constexpr const char* kRow[] = {"index",   "moment_sq",       "param_sq",       "update_sq",
                                         "grad_sq", "update_dot_grad", "moment_dot_grad"};
  static constexpr int kRowWidth = 7;
  FO_HD void to_row(double index, double* row) const {
    row[0] = index;
    row[1] = moment_sq;
    row[2] = param_sq;
    row[3] = update_sq;
    row[4] = grad_sq;
    row[5] = update_dot_grad;
    row[6] = moment_dot_grad;
  }

  FO_HD void add(float moment, float param, float update, float grad) {
    const double m = moment, p = param, u = update, g = grad;
    moment_sq += m * m;
    param_sq += p * p;
    update_sq += u * u;
    grad_sq += g * g;
    update_dot_grad += u * g;
    moment_dot_grad += m * g;
  }
  FO_HD void add(const MetricSums& o) {
    moment_sq += o.moment_sq;
    param_sq += o.param_sq;
    update_sq += o.update_sq;
    grad_sq += o.grad_sq;
    update_dot_grad += o.update_dot_grad;
    moment_dot_grad += o.moment_dot_grad;
  }
};

static_assert(sizeof(MetricSums::kRow) / sizeof(MetricSums::kRow[0]) == MetricSums::kRowWidth);

// One element's contribution, from the stored state and the current grad. The rules run on
// copies: metrics never change state.
FO_HD void adamw_metrics(float param, float grad, float exp_avg, float exp_avg_sq, float max_exp_avg_sq,
                         const AdamWSlot& s, MetricSums& acc) {
  float m = exp_avg, v = exp_avg_sq, vmax = max_exp_avg_sq;
  const float next = adamw_update(param, grad, m, v, vmax, s);
  acc.add(exp_avg, param, param - next, grad);
}

FO_HD void lion_metrics(float param, float grad, float exp_avg, const LionSlot& s, MetricSums& acc) {
  float m = exp_avg;
  const float next = lion_update(param, grad, m, s);
  acc.add(exp_avg, param, param - next, grad);
}

}  // namespace fo
