// The fused multi-tensor AdamW step and its metrics. The launch machinery (device-resident
// tensor table, one launch per dtype combination, slot passing, metric reduction) is
// multi_tensor.cuh; this file says what AdamW reads and writes per element.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "element_access.cuh"
#include "launcher_impl.cuh"
#include "multi_tensor.cuh"

namespace fo::cuda {
namespace {

struct AdamWOp {
  using Tensor = AdamWTensor;
  using Slot = AdamWSlot;
  static constexpr const char* kLauncher = "AdamWLauncher";
  static constexpr const char* kArrays = "param, grad or moment";
  static constexpr int kStates = 3;  // exp_avg, exp_avg_sq, max_exp_avg_sq
  // max_exp_avg_sq is checked per step (AdamWLauncher::Impl::check_slots): only the slot
  // decides whether it is used.
  static bool has_arrays(const AdamWTensor& t) { return t.param && t.grad && t.exp_avg && t.exp_avg_sq; }
  // max_exp_avg_sq may be left over from an earlier amsgrad setting: only the slot decides.
  __device__ static bool uses_state(int k, const AdamWSlot& s) { return k < 2 || (s.flags & kAdamWAmsgrad) != 0; }

  // Per element of an fp32 param a step reads p, g, m, v and writes p, m, v: 28 bytes with
  // fp32 state, 20 with bf16 state, 16 with 8-bit state (and 16 bytes of absmax per block).
  struct Rule {
    const AdamWSlot& s;
    __device__ Rule(const AdamWTensor&, const AdamWSlot& slot) : s(slot) {}
    __device__ __forceinline__ float update(float w, float g, float (&st)[kStates]) const {
      return adamw_update(w, g, st[0], st[1], st[2], s);
    }
    __device__ __forceinline__ void metrics(float w, float g, const float (&st)[kStates], MetricSums& acc) const {
      adamw_metrics(w, g, st[0], st[1], st[2], s, acc);
    }
  };
};

}  // namespace

// max_exp_avg_sq is optional per tensor: a slot that asks for amsgrad must not reach a tensor
// without one. Checked per step without touching the tensor table.
template <>
struct AdamWLauncher::Impl : DefaultImpl<AdamWOp> {
  // [slot]: one of the slot's non-empty tensors has no max_exp_avg_sq.
  std::vector<uint8_t> slot_lacks_max;

  void set_tensors(const std::vector<AdamWTensor>& tensors) {
    // Built first, committed only once the core has accepted the table (which also rejects
    // negative slots; they are skipped here).
    std::vector<uint8_t> lacks;
    for (const AdamWTensor& t : tensors) {
      if (t.numel <= 0 || t.slot < 0 || t.max_exp_avg_sq) continue;
      if (lacks.size() <= size_t(t.slot)) lacks.resize(size_t(t.slot) + 1, 0);
      lacks[size_t(t.slot)] = 1;
    }
    core.set_tensors(tensors);
    slot_lacks_max = std::move(lacks);
  }

  void check_slots(const AdamWSlot* slots, int slot_count, const char* fn) const {
    core.check_slots(slots, slot_count, fn);  // also: every slot below is < slot_count
    for (size_t s = 0; s < slot_lacks_max.size(); ++s) {
      if ((slots[s].flags & kAdamWAmsgrad) && slot_lacks_max[s]) {
        throw std::runtime_error(std::string(fn) + ": slot " + std::to_string(s) +
                                 " uses amsgrad but one of its tensors has no max_exp_avg_sq");
      }
    }
  }
};

template class Launcher<AdamWTensor, AdamWSlot>;

}  // namespace fo::cuda
