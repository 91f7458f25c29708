#pragma once
// What the generic Engine needs to know about each algorithm: its hyperparameters and
// their checks, its per-step scalars and its state buffers. Its backends are the generic
// cpu::ChunkRunner and cuda::Launcher over its Plan and Slot (native/common/backend.h).
#include <array>
#include <cmath>
#include <iterator>
#include <string>

#include "../common/adamw_plan.h"
#include "../common/adamw_scalars.h"
#include "../common/lion_plan.h"
#include "../common/lion_scalars.h"
#include "../common/sgd_plan.h"
#include "../common/state_dtype.h"
#include "errors.h"

namespace fo {

// The pointers every plan entry has, whatever the algorithm.
struct PlanBase {
  void* param;
  const void* grad;
  float* master;
  int64_t numel;
  int32_t slot;
  DType param_dtype, grad_dtype;
  uint32_t rng_stream;
  const int32_t* rows;  // row-sparse grads (lazy mode); null for dense
  int64_t row_width;
  StateFormat state;  // how the state buffers are encoded
};

namespace detail {
inline void require(bool ok, const std::string& where, const std::string& what, double got) {
  if (!ok) throw RangeError(where + ": " + what + ", got " + std::to_string(got));
}
}  // namespace detail

struct AdamWAlgo {
  using Hyper = AdamWHyper;
  using Slot = AdamWSlot;
  using Plan = AdamWTensor;
  static constexpr const char* kHandle = "AdamWHandle";  // the addon's class (AdamW, AdamWDL)
  static constexpr int kStates = 3;
  // One group's numbers in the hyperparameter table, in order (parse() reads them).
  static constexpr const char* kHyperFieldNames[] = {"lr",           "beta1",   "beta2",   "eps",
                                                     "weight_decay", "amsgrad", "maximize"};
  static constexpr size_t kHyperFields = std::size(kHyperFieldNames);

  static const char* state_name(int k) {
    static const char* names[kStates] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    return names[k];
  }
  // Which 8-bit code map each buffer uses (blockwise_quant.h): the first moment is signed.
  static bool state_signed(int k) { return k == 0; }
  // Buffers a step of group hyperparameters h needs.
  static bool state_needed(int k, const Hyper& h) { return k < 2 || h.amsgrad; }
  // Buffers a state dict must contain (the others are optional).
  static bool state_required(int k) { return k < 2; }
  static bool has_step_count() { return true; }

  static Hyper parse(const double* f) { return Hyper{f[0], f[1], f[2], f[3], f[4], f[5] != 0, f[6] != 0}; }
  static void check(const Hyper& h, const std::string& where) {
    using detail::require;
    require(std::isfinite(h.lr) && h.lr >= 0, where, "lr must be a finite number >= 0", h.lr);
    require(std::isfinite(h.beta1) && h.beta1 >= 0 && h.beta1 < 1, where, "betas[0] must be in [0, 1)", h.beta1);
    require(std::isfinite(h.beta2) && h.beta2 >= 0 && h.beta2 < 1, where, "betas[1] must be in [0, 1)", h.beta2);
    require(std::isfinite(h.eps) && h.eps > 0, where, "eps must be a finite number > 0", h.eps);
    require(std::isfinite(h.weight_decay) && h.weight_decay >= 0, where, "weight_decay must be a finite number >= 0",
            h.weight_decay);
  }
  // first_step (a slot per first step only with kFirstStepInSlot): the state buffers have
  // not been written by a step yet.
  static constexpr bool kFirstStepInSlot = false;
  static Slot make_slot(const Hyper& h, int64_t step, double lr_ratio, bool apply_decay, bool) {
    return make_adamw_slot(h, step, lr_ratio, apply_decay);
  }
  static Plan make_plan(const PlanBase& b, void* const* states, const Hyper& h) {
    return Plan{b.param,     b.grad, b.master,      states[0],    states[1],    h.amsgrad ? states[2] : nullptr,
                b.numel,     b.slot, b.param_dtype, b.grad_dtype, b.rng_stream, b.rows,
                b.row_width, b.state};
  }
  // The state pointers of a plan entry (part of the key that decides whether the plan changed).
  static std::array<const void*, kStates> state_pointers(const Plan& t) {
    return {t.exp_avg, t.exp_avg_sq, t.max_exp_avg_sq};
  }
};

struct LionAlgo {
  using Hyper = LionHyper;
  using Slot = LionSlot;
  using Plan = LionTensor;
  static constexpr const char* kHandle = "LionHandle";
  static constexpr int kStates = 1;
  static constexpr const char* kHyperFieldNames[] = {"lr", "beta1", "beta2", "weight_decay", "initial_lr"};
  static constexpr size_t kHyperFields = std::size(kHyperFieldNames);

  static const char* state_name(int) { return "exp_avg"; }
  static bool state_signed(int) { return true; }
  static bool state_needed(int, const Hyper&) { return true; }
  static bool state_required(int) { return true; }
  static bool has_step_count() { return false; }

  static Hyper parse(const double* f) { return Hyper{f[0], f[1], f[2], f[3], f[4]}; }
  static void check(const Hyper& h, const std::string& where) {
    using detail::require;
    require(std::isfinite(h.lr) && h.lr > 0, where, "lr must be a finite number > 0", h.lr);
    require(std::isfinite(h.beta1) && h.beta1 >= 0 && h.beta1 <= 1, where, "betas[0] must be in [0, 1]", h.beta1);
    require(std::isfinite(h.beta2) && h.beta2 >= 0 && h.beta2 <= 1, where, "betas[1] must be in [0, 1]", h.beta2);
    require(std::isfinite(h.weight_decay) && h.weight_decay >= 0, where, "weight_decay must be a finite number >= 0",
            h.weight_decay);
    require(std::isfinite(h.initial_lr) && h.initial_lr >= 0, where, "initial_lr must be a finite number >= 0",
            h.initial_lr);
  }
  static constexpr bool kFirstStepInSlot = false;
  static Slot make_slot(const Hyper& h, int64_t, double lr_ratio, bool apply_decay, bool) {
    return make_lion_slot(h, lr_ratio, apply_decay);
  }
  static Plan make_plan(const PlanBase& b, void* const* states, const Hyper&) {
    return Plan{b.param,       b.grad,       b.master,     states[0], b.numel,     b.slot,
                b.param_dtype, b.grad_dtype, b.rng_stream, b.rows,    b.row_width, b.state};
  }
  static std::array<const void*, kStates> state_pointers(const Plan& t) { return {t.exp_avg}; }
};

// torch.optim.SGD: state momentum_buffer only when momentum != 0, no step count in its
// state (torch keeps none), the first step's buffer = the grad (kFirstStepInSlot).
struct SgdAlgo {
  using Hyper = SgdHyper;
  using Slot = SgdSlot;
  using Plan = SgdTensor;
  static constexpr const char* kHandle = "SgdHandle";
  static constexpr int kStates = 1;
  static constexpr const char* kHyperFieldNames[] = {"lr",           "momentum", "dampening",
                                                     "weight_decay", "nesterov", "maximize"};
  static constexpr size_t kHyperFields = std::size(kHyperFieldNames);

  static const char* state_name(int) { return "momentum_buffer"; }
  static bool state_signed(int) { return true; }
  static bool state_needed(int, const Hyper& h) { return h.momentum != 0; }
  static bool state_required(int) { return false; }
  static bool has_step_count() { return false; }

  static Hyper parse(const double* f) { return Hyper{f[0], f[1], f[2], f[3], f[4] != 0, f[5] != 0}; }
  static void check(const Hyper& h, const std::string& where) {
    using detail::require;
    require(std::isfinite(h.lr) && h.lr >= 0, where, "lr must be a finite number >= 0", h.lr);
    require(std::isfinite(h.momentum) && h.momentum >= 0, where, "momentum must be a finite number >= 0", h.momentum);
    require(std::isfinite(h.dampening), where, "dampening must be a finite number", h.dampening);
    require(std::isfinite(h.weight_decay) && h.weight_decay >= 0, where, "weight_decay must be a finite number >= 0",
            h.weight_decay);
    if (h.nesterov && (h.momentum <= 0 || h.dampening != 0))
      throw RangeError(where + ": nesterov momentum requires a momentum > 0 and zero dampening");
  }
  static constexpr bool kFirstStepInSlot = true;
  static Slot make_slot(const Hyper& h, int64_t, double lr_ratio, bool apply_decay, bool first_step) {
    return make_sgd_slot(h, lr_ratio, apply_decay, first_step);
  }
  static Plan make_plan(const PlanBase& b, void* const* states, const Hyper& h) {
    return Plan{b.param,      b.grad, b.master,      h.momentum != 0 ? states[0] : nullptr,
                b.numel,      b.slot, b.param_dtype, b.grad_dtype,
                b.rng_stream, b.rows, b.row_width,   b.state};
  }
  static std::array<const void*, kStates> state_pointers(const Plan& t) { return {t.momentum_buffer}; }
};

}  // namespace fo
