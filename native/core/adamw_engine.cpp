#include "adamw_engine.h"

#include <cmath>
#include <cstring>

#include "../common/half_convert.h"
#include "../cpu/cpu_adamw.h"
#include "../cuda/cuda_backend.h"
#include "errors.h"

namespace fo {

namespace {

std::string group_label(size_t g) { return "param group " + std::to_string(g); }

void check_hyper(const AdamWHyper& h, size_t g) {
  auto fail = [&](const std::string& what) { throw RangeError(group_label(g) + ": " + what); };
  if (!std::isfinite(h.lr) || h.lr < 0) fail("lr must be a finite number >= 0, got " + std::to_string(h.lr));
  if (!std::isfinite(h.beta1) || h.beta1 < 0 || h.beta1 >= 1)
    fail("betas[0] must be in [0, 1), got " + std::to_string(h.beta1));
  if (!std::isfinite(h.beta2) || h.beta2 < 0 || h.beta2 >= 1)
    fail("betas[1] must be in [0, 1), got " + std::to_string(h.beta2));
  if (!std::isfinite(h.eps) || h.eps <= 0) fail("eps must be a finite number > 0, got " + std::to_string(h.eps));
  if (!std::isfinite(h.weight_decay) || h.weight_decay < 0)
    fail("weight_decay must be a finite number >= 0, got " + std::to_string(h.weight_decay));
}

bool same_plan(const std::vector<AdamWTensor>& a, const std::vector<AdamWTensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const AdamWTensor &x = a[i], &y = b[i];
    if (x.param != y.param || x.grad != y.grad || x.master != y.master || x.exp_avg != y.exp_avg ||
        x.exp_avg_sq != y.exp_avg_sq || x.max_exp_avg_sq != y.max_exp_avg_sq || x.numel != y.numel ||
        x.slot != y.slot || x.param_dtype != y.param_dtype || x.grad_dtype != y.grad_dtype)
      return false;
  }
  return true;
}

}  // namespace

AdamWEngine::AdamWEngine(Device device) : device_(device) {
  if (device == Device::CPU) cpu_runner_ = std::make_unique<cpu::AdamWRunner>();
  else cuda_launcher_ = std::make_unique<cuda::AdamWLauncher>();
}

AdamWEngine::~AdamWEngine() = default;

void AdamWEngine::check_index(int index) const {
  if (index < 0 || size_t(index) >= params_.size())
    throw RangeError("param index " + std::to_string(index) + " is out of range");
}

int AdamWEngine::add_param(std::shared_ptr<Tensor> param, int group, std::string name, bool master_weights) {
  if (!param) throw TypeError("param '" + name + "': data is missing");
  param->storage->data(("param '" + name + "' data").c_str());
  if (param->device() != device_)
    throw TypeError("param '" + name + "' is on " + device_name(param->device()) +
                    " but the optimizer runs on " + device_name(device_));
  if (group < 0) throw RangeError("param '" + name + "': group index must be >= 0");
  for (const Param& p : params_)
    if (p.data->storage == param->storage)
      throw TypeError("param '" + name + "' appears twice in the optimizer");
  Param p;
  p.data = std::move(param);
  p.group = group;
  p.name = std::move(name);
  p.master_weights = master_weights && p.data->dtype != DType::Float32;
  params_.push_back(std::move(p));
  return int(params_.size()) - 1;
}

void AdamWEngine::set_grad(int index, std::shared_ptr<Tensor> grad) {
  check_index(index);
  // Safe while a stepAsync() runs: the running step uses its own copy of the plan.
  params_[size_t(index)].grad = std::move(grad);  // checked at every step
}

std::shared_ptr<Storage> AdamWEngine::new_state_buffer(int64_t numel) {
  return Storage::allocate(device_, size_t(numel) * sizeof(float));
}

void AdamWEngine::sync_master_from_param(Param& p) {
  const Tensor& d = *p.data;
  float* master = static_cast<float*>(p.master->data_unchecked());
  const void* src = d.storage->data_unchecked();
  if (device_ == Device::CUDA) {
    cuda::convert_to_float32(master, src, d.dtype, d.numel);
  } else {
    const uint16_t* bits = static_cast<const uint16_t*>(src);
    if (d.dtype == DType::Float16)
      for (int64_t i = 0; i < d.numel; ++i) master[i] = half_bits_to_float(bits[i]);
    else
      for (int64_t i = 0; i < d.numel; ++i) master[i] = bf16_bits_to_float(bits[i]);
  }
  p.master_version = d.storage->version();
}

std::unique_ptr<AdamWEngine::PreparedStep> AdamWEngine::prepare(const std::vector<AdamWHyper>& groups,
                                                                bool for_async) {
  if (busy_) throw std::runtime_error("a stepAsync() is still running: await it before stepping again");
  for (size_t g = 0; g < groups.size(); ++g) check_hyper(groups[g], g);

  // 1. Validate every tensor; nothing is written until all checks pass.
  for (const Param& p : params_) {
    if (size_t(p.group) >= groups.size())
      throw RangeError("param '" + p.name + "' belongs to " + group_label(size_t(p.group)) +
                       " but only " + std::to_string(groups.size()) + " groups were given");
    if (p.data->storage->disposed()) throw std::runtime_error("param '" + p.name + "' data has been disposed");
    if (!p.grad) continue;
    const Tensor& g = *p.grad;
    if (g.storage->disposed()) throw std::runtime_error("param '" + p.name + "' grad has been disposed");
    if (g.numel != p.data->numel)
      throw RangeError("param '" + p.name + "': grad has " + std::to_string(g.numel) +
                       " elements but the param has " + std::to_string(p.data->numel));
    if (g.dtype != DType::Float32 && g.dtype != p.data->dtype)
      throw TypeError("param '" + p.name + "': grad dtype " + dtype_name(g.dtype) +
                      " must be float32 or the param's dtype " + dtype_name(p.data->dtype));
    if (g.device() != device_)
      throw TypeError("param '" + p.name + "': grad is on " + device_name(g.device()) +
                      " but the param is on " + device_name(device_));
  }

  // 2. Create missing state (allocation may throw; no step count has moved yet).
  for (Param& p : params_) {
    if (!p.grad) continue;
    const int64_t n = p.data->numel;
    if (!p.exp_avg) {
      p.exp_avg = new_state_buffer(n);
      p.exp_avg_sq = new_state_buffer(n);
    }
    if (groups[size_t(p.group)].amsgrad && !p.max_exp_avg_sq) p.max_exp_avg_sq = new_state_buffer(n);
    if (p.master_weights) {
      if (!p.master) p.master = new_state_buffer(n);
      if (p.master_version != p.data->storage->version() || p.step == 0) sync_master_from_param(p);
    }
  }

  // 3. Slots: one per distinct (group, step count) among the params that step.
  auto prepared = std::make_unique<PreparedStep>();
  std::vector<std::pair<int, int64_t>> slot_keys;
  std::vector<AdamWTensor> plan;
  plan.reserve(params_.size());
  for (Param& p : params_) {
    if (!p.grad) continue;
    const int64_t next_step = p.step + 1;
    int slot = -1;
    for (size_t k = 0; k < slot_keys.size(); ++k)
      if (slot_keys[k].first == p.group && slot_keys[k].second == next_step) slot = int(k);
    if (slot < 0) {
      slot = int(slot_keys.size());
      slot_keys.emplace_back(p.group, next_step);
      prepared->slots.push_back(make_adamw_slot(groups[size_t(p.group)], next_step));
    }
    AdamWTensor t;
    t.param = p.data->storage->data_unchecked();
    t.grad = p.grad->storage->data_unchecked();
    t.master = p.master ? static_cast<float*>(p.master->data_unchecked()) : nullptr;
    t.exp_avg = static_cast<float*>(p.exp_avg->data_unchecked());
    t.exp_avg_sq = static_cast<float*>(p.exp_avg_sq->data_unchecked());
    t.max_exp_avg_sq = groups[size_t(p.group)].amsgrad ? static_cast<float*>(p.max_exp_avg_sq->data_unchecked())
                                                       : nullptr;
    t.numel = p.data->numel;
    t.slot = slot;
    t.param_dtype = p.data->dtype;
    t.grad_dtype = p.grad->dtype;
    plan.push_back(t);
  }

  if (!plan_uploaded_ || !same_plan(plan, last_plan_)) upload_plan(plan);

  // 4. Commit: from here on the step happens.
  for (Param& p : params_) {
    if (!p.grad) continue;
    ++p.step;
    if (p.master) p.master_version = p.data->storage->version();
    if (for_async)
      for (const auto& s : {p.data->storage, p.grad->storage, p.master, p.exp_avg, p.exp_avg_sq, p.max_exp_avg_sq})
        if (s) {
          s->pin();
          prepared->pinned.push_back(s);
        }
  }
  if (for_async) busy_ = true;
  return prepared;
}

void AdamWEngine::upload_plan(const std::vector<AdamWTensor>& plan) {
  if (device_ == Device::CPU) cpu_runner_->set_tensors(plan);
  else cuda_launcher_->set_tensors(plan);
  last_plan_ = plan;
  plan_uploaded_ = true;
}

void AdamWEngine::execute(PreparedStep& step) {
  if (device_ == Device::CPU) cpu_runner_->run(step.slots.data(), int(step.slots.size()));
  else cuda_launcher_->launch(step.slots.data(), int(step.slots.size()));
}

void AdamWEngine::finish(PreparedStep& step) {
  for (auto& s : step.pinned) s->unpin();
  step.pinned.clear();
  busy_ = false;
}

void AdamWEngine::synchronize() {
  if (cuda_launcher_) cuda_launcher_->synchronize();
}

namespace {

std::vector<float> read_floats(const std::shared_ptr<Storage>& s, int64_t n, Device device) {
  if (!s) return {};
  std::vector<float> out(static_cast<size_t>(n));
  if (device == Device::CPU) std::memcpy(out.data(), s->data_unchecked(), size_t(n) * 4);
  else cuda::copy_device_to_host(out.data(), s->data_unchecked(), size_t(n) * 4);
  return out;
}

void write_floats(const std::shared_ptr<Storage>& s, const std::vector<float>& v, Device device) {
  if (device == Device::CPU) std::memcpy(s->data_unchecked(), v.data(), v.size() * 4);
  else cuda::copy_host_to_device(s->data_unchecked(), v.data(), v.size() * 4);
}

}  // namespace

AdamWEngine::ParamState AdamWEngine::get_state(int index) {
  check_index(index);
  if (busy_) throw std::runtime_error("cannot read optimizer state while stepAsync() is running");
  synchronize();
  Param& p = params_[size_t(index)];
  ParamState st;
  st.step = p.step;
  st.has_state = p.step > 0 && p.exp_avg;
  if (!st.has_state) return st;
  const int64_t n = p.data->numel;
  st.exp_avg = read_floats(p.exp_avg, n, device_);
  st.exp_avg_sq = read_floats(p.exp_avg_sq, n, device_);
  st.max_exp_avg_sq = read_floats(p.max_exp_avg_sq, n, device_);
  st.master = read_floats(p.master, n, device_);
  return st;
}

void AdamWEngine::set_state(int index, const ParamState& st) {
  check_index(index);
  if (busy_) throw std::runtime_error("cannot load optimizer state while stepAsync() is running");
  Param& p = params_[size_t(index)];
  const size_t n = size_t(p.data->numel);
  const std::string who = "state of param '" + p.name + "'";
  if (st.step < 0) throw RangeError(who + ": step must be >= 0");
  if (st.exp_avg.size() != n || st.exp_avg_sq.size() != n)
    throw RangeError(who + ": exp_avg and exp_avg_sq must have " + std::to_string(n) + " elements");
  if (!st.max_exp_avg_sq.empty() && st.max_exp_avg_sq.size() != n)
    throw RangeError(who + ": max_exp_avg_sq must have " + std::to_string(n) + " elements");
  if (!st.master.empty() && (st.master.size() != n || !p.master_weights))
    throw RangeError(who + ": master must have " + std::to_string(n) +
                     " elements, and only half params with master weights have one");
  p.data->storage->data(("param '" + p.name + "' data").c_str());
  synchronize();
  if (!p.exp_avg) {
    p.exp_avg = new_state_buffer(int64_t(n));
    p.exp_avg_sq = new_state_buffer(int64_t(n));
  }
  if (!st.max_exp_avg_sq.empty() && !p.max_exp_avg_sq) p.max_exp_avg_sq = new_state_buffer(int64_t(n));
  if (p.master_weights && !p.master) p.master = new_state_buffer(int64_t(n));
  write_floats(p.exp_avg, st.exp_avg, device_);
  write_floats(p.exp_avg_sq, st.exp_avg_sq, device_);
  if (!st.max_exp_avg_sq.empty()) write_floats(p.max_exp_avg_sq, st.max_exp_avg_sq, device_);
  if (p.master) {
    if (!st.master.empty()) {
      write_floats(p.master, st.master, device_);
      write_float32(*p.data, st.master.data());  // the param is the master, rounded
      p.master_version = p.data->storage->version();
    } else {
      sync_master_from_param(p);  // no saved master: start from the param's value
    }
  }
  p.step = st.step;
}

}  // namespace fo
