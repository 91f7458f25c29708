#pragma once
// The CPU side of the backend contract (native/common/backend.h), shared by every optimizer:
// each tensor cut into chunks of kChunkElements, the chunks spread over the thread pool, one
// pass over memory per chunk. Metrics reduce per chunk and then per tensor in chunk order, so
// the sums do not depend on which thread ran which chunk (NOTE(deterministic reductions),
// block_reduce.h). Declared once for every algorithm: an algorithm's loops file defines its
// per-chunk loops and instantiates the class (FO_CPU_ALGORITHM, chunk_runner_impl.h).
// launch() runs the whole step before it returns, so it either completes or changes nothing
// (NothingLaunched).
#include <cstdint>
#include <vector>

#include "../common/backend.h"

namespace fo::cpu {

template <class Tensor, class Slot>
class ChunkRunner final : public Backend<Tensor, Slot> {
 public:
  void set_tensors(const std::vector<Tensor>& tensors) override;
  void set_grads(const std::vector<const void*>& grads) override;
  // With use_prepass, the coefficients of the last prepare_grads scale each tensor's grads
  // (the engine does not run a step whose prepass found an inf).
  void launch(const Slot* slots, int slot_count, bool use_prepass) override;
  void prepare_grads(const GradPrepass& pass) override;
  bool read_found_inf() override { return found_inf_; }
  void metrics(const Slot* slots, int slot_count, MetricSums* out) override;
  void synchronize() override {}
  void wait_for_event(void* event) override;
  void* stream() const override { return nullptr; }
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void to_float32(float* dst, const void* src, DType src_dtype, int64_t n) override;

 private:
  struct Chunk {
    int32_t tensor;
    int64_t begin, end;
  };

  // fn(first_chunk, end_chunk) for every work item, on the pool (inline for one item).
  template <typename Fn>
  void for_each_item(const Fn& fn) const;

  std::vector<Tensor> tensors_;
  std::vector<Chunk> chunks_;
  std::vector<size_t> items_;  // item i is chunks_[items_[i], items_[i + 1])
  std::vector<float> coefs_;   // per tensor, from the last prepare_grads
  bool found_inf_ = false;
};

}  // namespace fo::cpu
