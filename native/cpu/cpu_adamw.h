#pragma once
// The CPU backend of AdamW: every tensor cut into chunks of kChunkElements, the chunks
// spread over the thread pool, one pass over memory per chunk.
#include <cstdint>
#include <vector>

#include "../common/adamw_plan.h"
#include "../common/adamw_rule.h"

namespace fo::cpu {

class AdamWRunner {
 public:
  // Rebuilds the chunk list; called only when the set of tensors changes.
  void set_tensors(const std::vector<AdamWTensor>& tensors);
  void run(const AdamWSlot* slots, int slot_count) const;

 private:
  struct Chunk {
    int32_t tensor;
    int64_t begin, end;
  };
  std::vector<AdamWTensor> tensors_;
  std::vector<Chunk> chunks_;
};

}  // namespace fo::cpu
