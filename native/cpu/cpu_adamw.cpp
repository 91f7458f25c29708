#include "cpu_adamw.h"

#include <algorithm>

#include "cpu_adamw_loops.h"
#include "thread_pool.h"

namespace fo::cpu {

namespace {

using ChunkFn = void (*)(const AdamWTensor&, const AdamWSlot&, int64_t, int64_t);

ChunkFn chunk_function(DType param, DType grad) {
  if (param == DType::Float32) return adamw_chunk_f32_f32;
  if (param == DType::Float16) return grad == DType::Float32 ? adamw_chunk_f16_f32 : adamw_chunk_f16_f16;
  return grad == DType::Float32 ? adamw_chunk_bf16_f32 : adamw_chunk_bf16_bf16;
}

}  // namespace

void AdamWRunner::set_tensors(const std::vector<AdamWTensor>& tensors) {
  tensors_ = tensors;
  chunks_.clear();
  for (size_t i = 0; i < tensors_.size(); ++i)
    for (int64_t b = 0; b < tensors_[i].numel; b += kChunkElements)
      chunks_.push_back({int32_t(i), b, std::min(b + kChunkElements, tensors_[i].numel)});
}

void AdamWRunner::run(const AdamWSlot* slots, int slot_count) const {
  (void)slot_count;  // the engine built every tensor's slot index below slot_count
  ThreadPool::instance().parallel_for(int64_t(chunks_.size()), [&](int64_t c) {
    const Chunk& chunk = chunks_[size_t(c)];
    const AdamWTensor& t = tensors_[size_t(chunk.tensor)];
    chunk_function(t.param_dtype, t.grad_dtype)(t, slots[t.slot], chunk.begin, chunk.end);
  });
}

}  // namespace fo::cpu
