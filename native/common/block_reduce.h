#pragma once
// NOTE(deterministic reductions). Every float64 sum the optimizers take over a chunk of
// kChunkElements grad or state elements (the pre-step pass of GradScaler and clipping, the
// clip-by-norm sums of clipGradNorm, the metrics) is added in one fixed order, on both
// backends, so the same inputs give the same bits on a GPU, on the CPU with any thread
// count, and on the CUDA host emulator:
//   1. The chunk's elements are dealt to kReduceLanes lanes in groups of kReduceVec: lane
//      l adds elements kReduceVec * (l + k * kReduceLanes) + 0 .. kReduceVec - 1, for
//      k = 0, 1, ..., in index order, into an accumulator that starts at zero. (On CUDA a
//      lane is a thread of a 256-thread block, and the group of 4 is its vector load; the
//      order is the same whether the loads are vector or scalar.)
//   2. The lanes are added by a fixed tree: lane t += lane t + s for s = 128, 64, ..., 1
//      (a shared-memory tree on CUDA; never atomics, whose order depends on scheduling).
//   3. A tensor's chunk sums are added in chunk order starting from zero, and tensors (for
//      a global norm) in tensor order starting from zero.
// The CPU reproduces 1 and 2 with 256 accumulators per chunk (reduce_in_block_order), at
// a few percent of a memory-bound pass. Only sums of IEEE operations are reproduced this
// way: a norm of type p other than 1, 2 or infinity goes through pow, which the device's
// math library and glibc round differently.
#include <cstdint>

#include "fo_macros.h"

namespace fo {

constexpr int kReduceLanes = 256;  // a CUDA block's threads
constexpr int kReduceVec = 4;      // elements a lane adds in a row (the CUDA vector width)
static_assert((kReduceLanes & (kReduceLanes - 1)) == 0, "the tree halves the lanes");

// Host side: the sum of add(acc, i) over elements [0, n) of a chunk, in the order above.
// Acc starts value-initialized (zero); combine(a, b) adds b into a.
template <class Acc, class AddElement, class Combine>
inline Acc reduce_in_block_order(int64_t n, const AddElement& add, const Combine& combine) {
  Acc lanes[kReduceLanes] = {};
  for (int64_t group = 0; group * kReduceVec < n; ++group) {
    Acc& lane = lanes[group % kReduceLanes];
    const int64_t first = group * kReduceVec;
    const int64_t last = first + kReduceVec < n ? first + kReduceVec : n;
    for (int64_t i = first; i < last; ++i) add(lane, i);
  }
  for (int stride = kReduceLanes / 2; stride > 0; stride >>= 1)
    for (int t = 0; t < stride; ++t) combine(lanes[t], lanes[t + stride]);
  return lanes[0];
}

}  // namespace fo
