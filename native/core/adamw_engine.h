#pragma once
// The device-independent half of a fused AdamW optimizer: the param list, per-param state
// (moments, fp32 masters, step counts), validation, and the launch plan handed to a
// backend. Everything a step needs is checked before anything is written, so a rejected
// step changes nothing.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../common/adamw_plan.h"
#include "../common/adamw_scalars.h"
#include "tensor.h"

namespace fo {

namespace cpu { class AdamWRunner; }
namespace cuda { class AdamWLauncher; }

class AdamWEngine {
 public:
  explicit AdamWEngine(Device device);
  ~AdamWEngine();

  Device device() const { return device_; }
  // Appends a param to group `group`; returns its index. The master copy (half params)
  // and moments are created at the param's first step, as torch creates state lazily.
  // master_weights: keep an fp32 master for a float16/bfloat16 param (ignored for float32).
  int add_param(std::shared_ptr<Tensor> param, int group, std::string name, bool master_weights = true);
  void set_grad(int index, std::shared_ptr<Tensor> grad);  // null: no grad
  int param_count() const { return int(params_.size()); }

  // A validated step: the plan and per-step scalars, ready to run on any thread.
  struct PreparedStep;
  // Validates hyperparameters (one entry per group) and every bound tensor, creates
  // missing state, and commits the new step counts. Throws before changing anything.
  // for_async pins every tensor the step touches (so dispose() is deferred) and marks the
  // engine busy until finish().
  std::unique_ptr<PreparedStep> prepare(const std::vector<AdamWHyper>& groups, bool for_async);
  // Runs the update (CPU: on the thread pool, returns when done; CUDA: enqueues).
  void execute(PreparedStep& step);
  // Ends an asynchronous step: releases its pins and the busy mark.
  void finish(PreparedStep& step);
  bool busy() const { return busy_; }
  void synchronize();

  // State access for state dicts: host copies, fp32.
  struct ParamState {
    int64_t step = 0;
    bool has_state = false;
    std::vector<float> exp_avg, exp_avg_sq, max_exp_avg_sq, master;
  };
  ParamState get_state(int index);
  // Replaces a param's state; vectors must have the param's element count (or be empty
  // for max_exp_avg_sq / master). Validated before anything is written. A given master
  // also rewrites the half param from it, so param and master agree.
  void set_state(int index, const ParamState& state);

 private:
  struct Param {
    std::shared_ptr<Tensor> data;
    std::shared_ptr<Tensor> grad;
    int group;
    std::string name;
    bool master_weights;
    int64_t step = 0;
    std::shared_ptr<Storage> master, exp_avg, exp_avg_sq, max_exp_avg_sq;
    uint64_t master_version = 0;  // data's version when the master was last synced
  };

  void check_index(int index) const;
  std::shared_ptr<Storage> new_state_buffer(int64_t numel);
  void sync_master_from_param(Param& p);
  void upload_plan(const std::vector<AdamWTensor>& plan);

  Device device_;
  std::vector<Param> params_;
  std::vector<AdamWTensor> last_plan_;
  bool plan_uploaded_ = false;
  bool busy_ = false;  // an asynchronous step is running on another thread
  std::unique_ptr<cpu::AdamWRunner> cpu_runner_;
  std::unique_ptr<cuda::AdamWLauncher> cuda_launcher_;
};

struct AdamWEngine::PreparedStep {
  std::vector<AdamWSlot> slots;
  std::vector<std::shared_ptr<Storage>> pinned;
};

}  // namespace fo
