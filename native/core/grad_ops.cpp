#include "grad_ops.h"

#include <cmath>
#include <string>

#include "../common/grad_transform.h"
#include "../cpu/grad_ops.h"
#include "../cuda/cuda_backend.h"
#include "errors.h"

namespace fo {

namespace {

// All on one device, none disposed, none held by a running stepAsync().
std::vector<GradRef> refs(const std::vector<std::shared_ptr<Tensor>>& grads, Device* device) {
  std::vector<GradRef> out;
  out.reserve(grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    const Tensor& t = *grads[i];
    const std::string what = "grads[" + std::to_string(i) + "]";
    void* data = t.storage->data(what.c_str());
    t.storage->check_not_in_use();
    if (i == 0)
      *device = t.device();
    else if (t.device() != *device)
      throw TypeError(what + " is on " + device_name(t.device()) + " but grads[0] is on " + device_name(*device));
    out.push_back(GradRef{data, t.numel, t.dtype});
  }
  return out;
}

}  // namespace

std::vector<double> grad_norm_sums(const std::vector<std::shared_ptr<Tensor>>& grads, double norm_type) {
  if (std::isnan(norm_type) || norm_type <= 0) throw RangeError("normType must be > 0 (or Infinity)");
  Device device = Device::CPU;
  std::vector<GradRef> r = refs(grads, &device);
  std::vector<double> out(r.size());
  if (r.empty()) return out;
  if (device == Device::CPU)
    cpu::grad_norm_sums(r, norm_type, out.data());
  else
    cuda::grad_norm_sums(r, norm_type, out.data());
  return out;
}

void scale_grads(const std::vector<std::shared_ptr<Tensor>>& grads, float coef) {
  Device device = Device::CPU;
  std::vector<GradRef> r = refs(grads, &device);
  if (r.empty()) return;
  if (device == Device::CPU)
    cpu::scale_grads(r, coef);
  else
    cuda::scale_grads(r, coef);
  for (const auto& g : grads) g->storage->bump_version();
}

void clamp_grads(const std::vector<std::shared_ptr<Tensor>>& grads, float lo, float hi) {
  if (std::isnan(lo) || std::isnan(hi) || lo > hi) throw RangeError("clamp bounds must satisfy min <= max");
  Device device = Device::CPU;
  std::vector<GradRef> r = refs(grads, &device);
  if (r.empty()) return;
  if (device == Device::CPU)
    cpu::clamp_grads(r, lo, hi);
  else
    cuda::clamp_grads(r, lo, hi);
  for (const auto& g : grads) g->storage->bump_version();
}

}  // namespace fo
