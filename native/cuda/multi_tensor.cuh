#pragma once
// The multi-tensor machinery shared by the CUDA optimizers (after PyTorch's
// MultiTensorApply.cuh and llm.c's adamw.cuh); internal to the CUDA backend.
//
// An optimizer plugs in an Op describing its tensors and the math of one element:
//
//   struct Op {
//     using Tensor = ...;                       // AdamWTensor, LionTensor, SgdTensor: has
//     using Slot = ...;                         //   param, grad, master, numel, slot, param/grad
//                                               //   dtypes, rng_stream, rows, row_width, state
//                                               //   (StateFormat) and for_each_state; the
//                                               //   slot has flags, grad (GradTransform),
//                                               //   rng_key0/1
//     static constexpr const char* kLauncher;   // "AdamWLauncher", for error messages
//     static constexpr const char* kArrays;     // "param, grad or moment"
//     static constexpr int kStates;             // state buffers per tensor (for_each_state)
//     static bool has_arrays(const Tensor&);    // the arrays a non-empty tensor needs
//     // Whether this step reads and writes state buffer k (AdamW: max_exp_avg_sq only with
//     // amsgrad); a buffer the tensor lacks is skipped anyway.
//     __device__ static bool uses_state(int k, const Slot&);
//     struct Rule {                             // device side, built once per block
//       __device__ Rule(const Tensor&, const Slot&);
//       // One element: the param's fp32 value w, the transformed grad g and the fp32 values
//       // of its state (0 for a buffer not used) in, the new param out, st updated in place.
//       __device__ float update(float w, float g, float (&st)[kStates]) const;
//       // The raw grad; adds to acc, changes nothing.
//       __device__ void metrics(float w, float g, const float (&st)[kStates], MetricSums&) const;
//     };
//   };
//
// Everything else is written here once for every algorithm: reading and writing the param
// (ParamRef: fp32 masters, bf16 stochastic rounding), the grad and the state in each of its
// dtypes (state_access.cuh: fp32 and bf16 elements, vector accesses on aligned chunks;
// 8-bit codes, requantized a whole quant block at a time by the block's threads together,
// step_coded_chunk), so the state dtype costs an Op nothing.
//
// Row-sparse tensors (Tensor::rows non-null, lazy mode; fp32 state only) get their own
// instance of the step kernel (StepPass::Sparse) and their own launches, so the dense
// kernels are exactly what they were without sparse support; so do tensors with 8-bit state
// (StepPass::Coded) and with bf16 state (StepPass::BFloat16), whose registers would
// otherwise cost the fp32 path occupancy.
//
// The Op also gets from here: the device-resident tensor table and block -> (tensor, chunk)
// map, one launch per (param dtype, grad dtype) combination and kind of tensor (step_pass),
// the step's slots passed inline or through a
// device buffer, the deterministic reduction of per-block metric partials, and the pre-step
// grad pass (prepare_grads: found_inf and clip coefficients, left on the device for the next
// launch).
//
// Unlike PyTorch, the table of tensors lives in device memory and is uploaded only when the
// optimizer's tensors change, so a step costs one launch per dtype combination plus, for
// many hyperparameter slots, one small copy.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../common/adamw_plan.h"  // kChunkElements
#include "../common/adamw_rule.h"  // kStochasticRounding
#include "../common/block_reduce.h"
#include "../common/dtype.h"
#include "../common/grad_transform.h"
#include "../common/metrics.h"
#include "../common/state_codec.h"  // host_code_map, host_code_midpoints
#include "../common/state_dtype.h"
#include "../common/stochastic_rounding.h"
#include "cuda_backend.h"
#include "cuda_check.h"
#include "element_access.cuh"
#include "pinned_uploads.cuh"
#include "state_access.cuh"

namespace fo::cuda::mt {

// Threads per block (one block per chunk) and elements per thread per iteration on the
// aligned path: also the lanes and groups of the reduction order both backends share
// (NOTE(deterministic reductions) in native/common/block_reduce.h).
constexpr int kThreads = kReduceLanes;
constexpr int kVec = kReduceVec;
constexpr int kInlineSlots = 64;
static_assert((kThreads & (kThreads - 1)) == 0, "the block reduction halves kThreads");

// ---------------------------------------------------------------------------------------
// Kernel-side pieces

// The common case: the step's slots travel in the kernel's parameter block, so a step needs
// no copy at all; every block reads its slot as a broadcast from the constant bank.
template <class Slot>
struct SlotTable {
  Slot s[kInlineSlots];
};

// The work of one block: chunk `chunk` (kChunkElements elements) of tensor `tensor`.
struct BlockWork {
  int32_t tensor;
  int32_t chunk;
};

// One launch per supported (param dtype, grad dtype) pair: grads are fp32 or the param's
// own half type.
struct Combo {
  DType param, grad;
};
inline constexpr Combo kCombos[] = {
    {DType::Float32, DType::Float32},  {DType::Float16, DType::Float32},   {DType::Float16, DType::Float16},
    {DType::BFloat16, DType::Float32}, {DType::BFloat16, DType::BFloat16},
};
constexpr int kComboCount = int(sizeof(kCombos) / sizeof(kCombos[0]));

inline int combo_index(DType param, DType grad) {
  for (int i = 0; i < kComboCount; ++i) {
    if (kCombos[i].param == param && kCombos[i].grad == grad) return i;
  }
  return -1;
}

// Vector accesses need every array aligned to kVec of its elements. A chunk starts a multiple
// of kChunkElements elements into its tensor, so it is aligned exactly when its tensor is.
template <typename T>
__device__ __forceinline__ bool vec_aligned(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % (kVec * sizeof(T)) == 0;  // null counts as aligned
}

// The parameter of one chunk as the update rules see it: fp32 values read from, and
// written back to, the fp32 master when a half param has one, else the param itself.
// Indexed by the state index j: relative to the chunk's first element for dense tensors
// (begin = the chunk's begin), absolute for row-sparse ones (begin = 0).
template <DType P>
struct ParamRef {
  storage_t<P>* param;
  float* master;  // the fp32 value of a half param; null for fp32 params (and half without one)
  // Stochastic rounding of a bf16 param (the slot's kStochasticRounding; ignored for fp16 and
  // fp32 params): the random bits of element e of the tensor are
  // rounding_bits(stream_key, e), e = begin + j, so they depend neither on how the tensor is
  // cut into chunks nor on the vector width (nor, for a row-sparse grad, on which grad
  // element updates e).
  bool stochastic;
  uint32_t stream_key;  // rounding_stream_key(slot keys, tensor's rng_stream), once per block
  int64_t begin;        // index in the tensor of element 0 of param / master

  // Tensor: AdamWTensor / LionTensor; Slot: AdamWSlot / LionSlot.
  template <class Tensor, class Slot>
  __device__ ParamRef(const Tensor& t, const Slot& s, int64_t chunk_begin)
      : param(static_cast<storage_t<P>*>(t.param) + chunk_begin),
        // An fp32 param is its own master: whatever the table says, it is not used.
        master(P != DType::Float32 && t.master ? t.master + chunk_begin : nullptr),
        stochastic(P == DType::BFloat16 && (s.flags & kStochasticRounding) != 0),
        stream_key(stochastic ? rounding_stream_key(s.rng_key0, s.rng_key1, t.rng_stream) : 0u),
        begin(chunk_begin) {}

  __device__ bool aligned() const { return vec_aligned(param) && vec_aligned(master); }

  // Elements [i, i + N) as fp32: the master when there is one, so the rule never sees a
  // value rounded to 16 bits; else the param (a half param without a master is updated in
  // its own precision, rounded after every step).
  template <int N, typename Index>
  __device__ __forceinline__ void load(Index i, float (&w)[N]) const {
    if constexpr (P != DType::Float32) {
      if (master) {
        fo::cuda::load<DType::Float32, N>(master + i, w);
        return;
      }
    }
    fo::cuda::load<P, N>(param + i, w);
  }

  // A half param is refreshed from its master in the same pass, so p.data never lags. A bf16
  // param is rounded stochastically from the fp32 value when the slot asks for it, master or
  // not (the master itself keeps the exact value).
  template <int N, typename Index>
  __device__ __forceinline__ void store(Index i, const float (&w)[N]) const {
    if constexpr (P != DType::Float32) {
      if (master) fo::cuda::store<DType::Float32, N>(master + i, w);
    }
    if constexpr (P == DType::BFloat16) {
      if (stochastic) {
        store_bf16_stochastic<N>(param + i, w, stream_key, begin + i);
        return;
      }
    }
    fo::cuda::store<P, N>(param + i, w);
  }
};

// What one block works on: its tensor's entry, its slot and its chunk's extent.
template <class Op>
struct BlockItem {
  typename Op::Tensor t;
  typename Op::Slot s;
  int64_t begin;   // first element of the chunk in the tensor
  int n;           // elements in the chunk (kChunkElements but for a tensor's last chunk)
  int32_t tensor;  // the tensor's index in the table (its entry in the coefficient table)
};

// grads: this step's grad pointer per tensor (the table's own grad fields are not used: a new
// grad tensor each step must not cost a table upload).
template <class Op>
__device__ __forceinline__ BlockItem<Op> block_item(const typename Op::Tensor* __restrict__ tensors,
                                                    const BlockWork* __restrict__ work,
                                                    const void* const* __restrict__ grads,
                                                    const SlotTable<typename Op::Slot>& inline_slots,
                                                    const typename Op::Slot* __restrict__ slot_buffer) {
  BlockItem<Op> b;
  const BlockWork item = work[blockIdx.x];
  b.tensor = item.tensor;
  b.t = tensors[item.tensor];
  b.t.grad = grads[item.tensor];
  b.s = slot_buffer ? slot_buffer[b.t.slot] : inline_slots.s[b.t.slot];
  b.begin = int64_t(item.chunk) * kChunkElements;
  const int64_t left = b.t.numel - b.begin;
  b.n = int(left < kChunkElements ? left : kChunkElements);
  return b;
}

// Walks the grad elements e, e + stride, e + 2 * stride, ... of a row-sparse tensor and
// gives each one's state index, rows[e / width] * width + e % width (sparse_state_index),
// without a 64-bit division per element: one division when it starts, then (row, col)
// advance by the quotient and remainder of stride / width with a carry.
struct RowCursor {
  int64_t row, col;  // of the current grad element e
  int64_t width, row_step, col_step;

  __host__ __device__ __forceinline__ RowCursor(int64_t e, int64_t stride, int64_t row_width)
      : row(e / row_width),
        col(e % row_width),
        width(row_width),
        row_step(stride / row_width),
        col_step(stride % row_width) {}

  __host__ __device__ __forceinline__ void advance() {
    row += row_step;
    col += col_step;
    if (col >= width) {
      col -= width;
      ++row;
    }
  }

  // Read only by this kernel: through the read-only cache on the device.
  __host__ __device__ __forceinline__ int64_t state_index(const int32_t* rows) const {
#if defined(__CUDA_ARCH__)
    return int64_t(__ldg(rows + row)) * width + col;
#else
    return int64_t(rows[row]) * width + col;
#endif
  }
};

// Elements [i, i + N) of the chunk's grad update param and state elements [j, j + N) (j == i
// for dense grads): every load is issued before the math, so the N-wide path keeps a vector
// load per array in flight per thread (the kernels are bound by memory latency, not
// arithmetic); the Op's rule then runs on fp32 values in registers, and every grad goes
// through the slot's GradTransform (unscale, clip coefficient `coef`, clip by value) first.
template <int N, class Op, DType P, DType G, class State, typename J>
__device__ __forceinline__ void update_group(const ParamRef<P>& param, const storage_t<G>* grad, const State& state,
                                             const typename Op::Rule& rule, const typename Op::Slot& s, float coef,
                                             int i, J j) {
  constexpr int S = Op::kStates;
  float w[N], g[N], v[S][N] = {};
  param.template load<N>(j, w);
  load<G, N>(grad + i, g);
  state.template load<N>(j, v);
#pragma unroll
  for (int e = 0; e < N; ++e) {
    float x[S];
#pragma unroll
    for (int k = 0; k < S; ++k) x[k] = v[k][e];
    w[e] = rule.update(w[e], transform_grad(g[e], coef, s.grad), x);
#pragma unroll
    for (int k = 0; k < S; ++k) v[k][e] = x[k];
  }
  param.template store<N>(j, w);
  state.template store<N>(j, v);
}

// A dense chunk with fp32 or bf16 state (State: Fp32State, Bf16State).
template <class Op, DType P, DType G, class State>
__device__ __forceinline__ void step_dense_chunk(const BlockItem<Op>& b, float coef, const State& state) {
  const ParamRef<P> param(b.t, b.s, b.begin);
  const storage_t<G>* grad = static_cast<const storage_t<G>*>(b.t.grad) + b.begin;
  const typename Op::Rule rule(b.t, b.s);

  // Uniform across the block, so the branch costs no divergence.
  int tail_begin = 0;
  if (param.aligned() && vec_aligned(grad) && state.aligned()) {
    tail_begin = b.n - b.n % kVec;
    for (int i = threadIdx.x * kVec; i < tail_begin; i += kThreads * kVec) {
      update_group<kVec, Op, P, G>(param, grad, state, rule, b.s, coef, i, i);
    }
  }
  // Misaligned tensors, and the last n % kVec elements of an aligned one. Elements are
  // independent, so the scalar path may visit them in the most coalesced order.
  for (int i = tail_begin + threadIdx.x; i < b.n; i += kThreads) {
    update_group<1, Op, P, G>(param, grad, state, rule, b.s, coef, i, i);
  }
}

// A row-sparse chunk (fp32 state only: set_tensors refuses others). The grad from the
// chunk's first element, as for dense tensors; param, master and state from the tensor's
// first, indexed by the absolute state index j = sparse_state_index(rows, width, begin + i).
template <class Op, DType P, DType G>
__device__ __forceinline__ void step_sparse_chunk(const BlockItem<Op>& b, float coef) {
  const ParamRef<P> param(b.t, b.s, 0);
  const storage_t<G>* grad = static_cast<const storage_t<G>*>(b.t.grad) + b.begin;
  const Fp32State<Op> state(state_buffers<Op>(b.t, b.s), b.t, b.s, 0);
  const typename Op::Rule rule(b.t, b.s);
  const int32_t* rows = b.t.rows;
  const int64_t width = b.t.row_width;

  // Uniform across the block. With rows a multiple of kVec wide, a group of kVec grad
  // elements starting at a multiple of kVec (begin is one) lies in one row, so it updates
  // kVec consecutive state elements from a j that is itself a multiple of kVec: vector
  // accesses stay aligned when every array's start is.
  int tail_begin = 0;
  if (width % kVec == 0 && param.aligned() && vec_aligned(grad) && state.aligned()) {
    tail_begin = b.n - b.n % kVec;  // b.n is a multiple of kVec here: no tail
    RowCursor r(b.begin + threadIdx.x * kVec, kThreads * kVec, width);
    for (int i = threadIdx.x * kVec; i < tail_begin; i += kThreads * kVec) {
      update_group<kVec, Op, P, G>(param, grad, state, rule, b.s, coef, i, r.state_index(rows));
      r.advance();
    }
  }
  RowCursor r(b.begin + tail_begin + threadIdx.x, kThreads, width);
  for (int i = tail_begin + threadIdx.x; i < b.n; i += kThreads) {
    update_group<1, Op, P, G>(param, grad, state, rule, b.s, coef, i, r.state_index(rows));
    r.advance();
  }
}

// Bytes per element of an fp32 param (grad fp32) that a step moves, and the speed-up over
// fp32 state they predict if every kind stays at the memory-bandwidth limit (not measured on
// a GPU yet; the 8-bit kernel is scalar and runs two blocks per SM, so it may fall short):
//   AdamW  fp32 state 28, bf16 20 (1.4x), 8-bit 16 + 2 absmax of 8 bytes per block
//          (16.06 with blocks of 256: 1.74x);
//   Lion   20, 16 (1.25x), 14.03 (1.43x);    SGD with momentum: the same as Lion.
// The absmax of a block is read by every thread (a broadcast, from L1) and written once.
//
// 8-bit state is stepped in rounds of kCodedRound elements, the largest quant block: eight per
// thread, so every thread keeps eight independent loads per array in flight, whichever the
// block size (a round holds one 2048-block or eight 256-blocks).
constexpr int kCodedRound = 2048;
constexpr int kCodedPerThread = kCodedRound / kThreads;
static_assert(kCodedRound % kThreads == 0 && kChunkElements % kCodedRound == 0, "rounds tile a chunk");

// What a block keeps in shared memory for 8-bit state: the code map and midpoints of each
// state buffer (S of them: AdamW's three), and the maxima of the round's quant blocks (at
// most eight) for three rounds (step_coded_chunk).
template <int S>
struct CodedShared {
  float map[S][256];
  float mid[S][256];
  uint32_t max_bits[3][kCodedRound / 256][S];
};

// One per kernel and state count, whichever block size the chunk has: a __shared__ object
// in each step_coded_chunk instance would reserve it twice.
template <int S>
__device__ __forceinline__ CodedShared<S>& coded_shared() {
  __shared__ CodedShared<S> shared;
  return shared;
}

// A dense chunk with 8-bit state in quant blocks of B elements (NOTE(8-bit step),
// blockwise_quant.h). Thread t takes elements t + e * kThreads (e < kCodedPerThread) of each
// round: coalesced, and element e lies in quant block e * kThreads / B of the round. It
// dequantizes their state with the stored absmax of their block, runs the rule, stores the
// param and keeps the new state in registers. Each block's new absmax is then the maximum of
// the absmax_bits of its elements, combined over the threads with a shared atomicMax; each
// thread requantizes its own elements with it, and thread 0 writes it. Scalar accesses: a
// byte of state per buffer per element.
//
// One barrier per round: the maxima live in three shared slots used in turn. Round r
// combines into slot r % 3; after its barrier, every thread reads that slot and thread 0
// clears slot (r + 2) % 3, last read in round r - 1 (before this barrier) and next combined
// into in round r + 2 (after round r + 1's barrier, which thread 0 reaches only once it has
// cleared it). The stored absmax of a round's blocks is read by every thread before the
// round's barrier and written by thread 0 after it; no other round touches those blocks.
template <class Op, DType P, DType G, int B>
__device__ __forceinline__ void step_coded_chunk(const BlockItem<Op>& b, float coef, const CodeTables* tables) {
  constexpr int S = Op::kStates;
  constexpr int E = kCodedPerThread;
  constexpr int Q = kCodedRound / B;  // quant blocks per round
  static_assert(kCodedRound % B == 0 && B % kThreads == 0, "a thread's elements of a round tile its quant blocks");
  CodedShared<S>& sh = coded_shared<S>();
  const StateBuffers<Op> buffers = state_buffers<Op>(b.t, b.s);
#pragma unroll
  for (int k = 0; k < S; ++k) {
    const int which = code_table(buffers.is_signed[k]);
    for (int c = threadIdx.x; c < 256; c += kThreads) {
      sh.map[k][c] = tables->map[which][c];
      sh.mid[k][c] = tables->mid[which][c];
    }
  }
  constexpr int kMaxima = int(sizeof(sh.max_bits) / sizeof(uint32_t));
  for (int x = threadIdx.x; x < kMaxima; x += kThreads) (&sh.max_bits[0][0][0])[x] = 0u;
  __syncthreads();

  const ParamRef<P> param(b.t, b.s, b.begin);
  const storage_t<G>* grad = static_cast<const storage_t<G>*>(b.t.grad) + b.begin;
  const typename Op::Rule rule(b.t, b.s);
  uint8_t* codes[S];
  float* absmax[S];  // from the chunk's first quant block
#pragma unroll
  for (int k = 0; k < S; ++k) {
    codes[k] = buffers.p[k] ? static_cast<uint8_t*>(buffers.p[k]) + b.begin : nullptr;
    absmax[k] = buffers.p[k] ? state_absmax(buffers.p[k], b.t.numel) + b.begin / B : nullptr;
  }

  int slot = 0;
  for (int base = 0; base < b.n; base += kCodedRound) {
    const int first_block = base / B;  // the round's first quant block in the chunk
    float v[S][E] = {};                // the new state of the thread's elements (0 past the end)
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int i = base + e * kThreads + int(threadIdx.x);
      if (i >= b.n) continue;
      const int q = first_block + e * kThreads / B;
      float w[1], g[1], x[S] = {};
      param.template load<1>(i, w);
      load<G, 1>(grad + i, g);
#pragma unroll
      for (int k = 0; k < S; ++k) {
        if (codes[k]) x[k] = dequantize_code(sh.map[k], codes[k][i], absmax[k][q]);
      }
      w[0] = rule.update(w[0], transform_grad(g[0], coef, b.s.grad), x);
      param.template store<1>(i, w);
#pragma unroll
      for (int k = 0; k < S; ++k) v[k][e] = x[k];
    }

    // The thread's maximum per quant block first: one atomic per block and buffer.
    uint32_t(&maxima)[kCodedRound / 256][S] = sh.max_bits[slot];
#pragma unroll
    for (int q = 0; q < Q; ++q) {
#pragma unroll
      for (int k = 0; k < S; ++k) {
        if (!codes[k]) continue;
        uint32_t m = 0u;
#pragma unroll
        for (int e = q * E / Q; e < (q + 1) * E / Q; ++e) {
          const uint32_t bits = absmax_bits(v[k][e]);
          m = bits > m ? bits : m;
        }
        atomicMax(&maxima[q][k], m);
      }
    }
    __syncthreads();

#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int i = base + e * kThreads + int(threadIdx.x);
      if (i >= b.n) continue;
      const int q = e * kThreads / B;
#pragma unroll
      for (int k = 0; k < S; ++k) {
        if (codes[k]) codes[k][i] = quantize_code(sh.mid[k], v[k][e] * quant_scale(bits_float(maxima[q][k])));
      }
    }
    if (threadIdx.x == 0) {
      const int clear = slot == 0 ? 2 : slot - 1;  // (slot + 2) % 3
#pragma unroll
      for (int q = 0; q < Q; ++q) {
#pragma unroll
        for (int k = 0; k < S; ++k) {
          sh.max_bits[clear][q][k] = 0u;
          if (codes[k] && base + q * B < b.n) absmax[k][first_block + q] = bits_float(maxima[q][k]);
        }
      }
    }
    slot = slot == 2 ? 0 : slot + 1;
  }
}

// The instances of the step kernel, one per kind of tensor: dense with fp32 state, with bf16
// state, with 8-bit state, and row-sparse (fp32 state). Each dtype pair's tensors of one kind
// share a launch, so an optimizer whose groups all keep one state dtype launches as many
// kernels as with fp32 state (but 8-bit state: its tensors below kMinQuantizedNumel keep fp32
// state, one more launch). A kernel per kind keeps each path's register count its own: 8-bit
// state needs about 90-128 registers per thread for AdamW on sm_90 (a round's new state held
// between the reduction and the requantization), where fp32 state needs 64-78 as before
// (three blocks per SM); bf16 state would have cost SGD's fp32 path (29-32) about 50.
enum class StepPass : int { Float32 = 0, BFloat16 = 1, Coded = 2, Sparse = 3 };
constexpr int kStepPasses = 4;

template <class Tensor>
StepPass step_pass(const Tensor& t) {
  if (t.rows) return StepPass::Sparse;
  switch (t.state.dtype) {
    case StateDType::BFloat16:
      return StepPass::BFloat16;
    case StateDType::Uint8:
      return StepPass::Coded;
    default:
      return StepPass::Float32;
  }
}

// One optimizer step: one block per chunk of one tensor; all tensors of this dtype pair and
// kind (step_pass) in a single launch. With the pre-step pass (found_inf and coefs non-null,
// from prepare_grads): a set found_inf makes every block return before touching anything,
// and coefs[tensor] is the tensor's clip coefficient; without it the coefficient is 1.
// Sparse: every tensor of the launch has row-sparse grads (Tensor::rows non-null); grad
// element i of the chunk updates state element sparse_state_index(rows, row_width, begin + i)
// of the tensor. Distinct rows (the caller's check) mean no two threads write one element.
// tables: the code maps (non-null when a tensor of the table has 8-bit state).
template <class Op, DType P, DType G, StepPass Pass>
__global__ void __launch_bounds__(kThreads)
    step_kernel(const typename Op::Tensor* __restrict__ tensors, const BlockWork* __restrict__ work,
                const void* const* __restrict__ grads, SlotTable<typename Op::Slot> inline_slots,
                const typename Op::Slot* __restrict__ slot_buffer, const int32_t* __restrict__ found_inf,
                const float* __restrict__ coefs, const CodeTables* __restrict__ tables) {
  // Uniform across the block (and the grid): the step changes nothing.
  if (found_inf && *found_inf != 0) return;
  const BlockItem<Op> b = block_item<Op>(tensors, work, grads, inline_slots, slot_buffer);
  const float coef = coefs ? coefs[b.tensor] : 1.0f;

  if constexpr (Pass == StepPass::Sparse) {
    step_sparse_chunk<Op, P, G>(b, coef);
  } else if constexpr (Pass == StepPass::Coded) {
    if (b.t.state.block == 2048) {
      step_coded_chunk<Op, P, G, 2048>(b, coef, tables);
    } else {
      step_coded_chunk<Op, P, G, 256>(b, coef, tables);
    }
  } else if constexpr (Pass == StepPass::BFloat16) {
    step_dense_chunk<Op, P, G>(b, coef, Bf16State<Op>(state_buffers<Op>(b.t, b.s), b.t, b.s, b.begin));
  } else {
    step_dense_chunk<Op, P, G>(b, coef, Fp32State<Op>(state_buffers<Op>(b.t, b.s), b.t, b.s, b.begin));
  }
}

// The six sums as an array, for the shared-memory tree (a __shared__ array of MetricSums
// would need its constructor run; plain doubles, one row per sum, also avoid bank conflicts).
constexpr int kMetricFields = 6;
static_assert(sizeof(MetricSums) == kMetricFields * sizeof(double),
              "MetricSums changed: update to_fields / from_fields");
static_assert(std::is_trivially_copyable<MetricSums>::value, "partials are copied as bytes");

__device__ __forceinline__ void to_fields(const MetricSums& m, double (&f)[kMetricFields]) {
  f[0] = m.moment_sq;
  f[1] = m.param_sq;
  f[2] = m.update_sq;
  f[3] = m.grad_sq;
  f[4] = m.update_dot_grad;
  f[5] = m.moment_dot_grad;
}

__device__ __forceinline__ MetricSums from_fields(const double (&f)[kMetricFields]) {
  MetricSums m;
  m.moment_sq = f[0];
  m.param_sq = f[1];
  m.update_sq = f[2];
  m.grad_sq = f[3];
  m.update_dot_grad = f[4];
  m.moment_dot_grad = f[5];
  return m;
}

// Writes the sum of every thread's `mine` to *out, by the lane tree of NOTE(deterministic
// reductions) (block_reduce.h), step 2, over shared memory. Called by all kThreads threads
// of the block.
__device__ __forceinline__ void store_block_sum(const MetricSums& mine, MetricSums* out) {
  __shared__ double part[kMetricFields][kThreads];
  const int t = threadIdx.x;
  double f[kMetricFields];
  to_fields(mine, f);
#pragma unroll
  for (int k = 0; k < kMetricFields; ++k) part[k][t] = f[k];
  __syncthreads();
#pragma unroll
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (t < stride) {
#pragma unroll
      for (int k = 0; k < kMetricFields; ++k) part[k][t] += part[k][t + stride];
    }
    __syncthreads();
  }
  if (t == 0) {
#pragma unroll
    for (int k = 0; k < kMetricFields; ++k) f[k] = part[k][0];
    *out = from_fields(f);
  }
}

// Adds the metrics of elements [i, i + N) of the chunk, in index order, to acc; writes
// nothing. The raw grad: a metrics slot carries the identity transform and no coefficient
// applies.
template <int N, class Op, DType P, DType G, class State>
__device__ __forceinline__ void metrics_group(const ParamRef<P>& param, const storage_t<G>* grad, const State& state,
                                              const typename Op::Rule& rule, int i, MetricSums& acc) {
  constexpr int S = Op::kStates;
  float w[N], g[N], v[S][N] = {};
  param.template load<N>(i, w);
  load<G, N>(grad + i, g);
  state.template load<N>(i, v);
#pragma unroll
  for (int e = 0; e < N; ++e) {
    float x[S];
#pragma unroll
    for (int k = 0; k < S; ++k) x[k] = v[k][e];
    rule.metrics(w[e], g[e], x, acc);
  }
}

// Thread t is lane t of NOTE(deterministic reductions) (block_reduce.h), step 1: vector
// loads when the chunk is aligned, one element at a time when not (or for the last,
// partial group), the same elements in the same order either way.
template <class Op, DType P, DType G, class State>
__device__ __forceinline__ MetricSums chunk_metrics(const BlockItem<Op>& b, const State& state) {
  const ParamRef<P> param(b.t, b.s, b.begin);
  const storage_t<G>* grad = static_cast<const storage_t<G>*>(b.t.grad) + b.begin;
  const typename Op::Rule rule(b.t, b.s);
  const bool aligned = param.aligned() && vec_aligned(grad) && state.aligned();
  const int full_end = b.n - b.n % kVec;
  MetricSums acc;
  for (int i = threadIdx.x * kVec; i < b.n; i += kThreads * kVec) {
    if (aligned && i < full_end) {
      metrics_group<kVec, Op, P, G>(param, grad, state, rule, i, acc);
    } else {
      for (int k = i; k < i + kVec && k < b.n; ++k) metrics_group<1, Op, P, G>(param, grad, state, rule, k, acc);
    }
  }
  return acc;
}

// The metric sums of one chunk per block into partials[blockIdx.x]; nothing else is written.
// Dense tensors only (the engine asks no metrics of row-sparse ones). State of any dtype is
// decoded as a step decodes it.
template <class Op, DType P, DType G>
__global__ void __launch_bounds__(kThreads)
    metrics_kernel(const typename Op::Tensor* __restrict__ tensors, const BlockWork* __restrict__ work,
                   const void* const* __restrict__ grads, SlotTable<typename Op::Slot> inline_slots,
                   const typename Op::Slot* __restrict__ slot_buffer, const CodeTables* __restrict__ tables,
                   MetricSums* __restrict__ partials) {
  const BlockItem<Op> b = block_item<Op>(tensors, work, grads, inline_slots, slot_buffer);
  const StateBuffers<Op> buffers = state_buffers<Op>(b.t, b.s);
  MetricSums acc;
  switch (b.t.state.dtype) {
    case StateDType::Uint8:
      acc = chunk_metrics<Op, P, G>(b, CodedState<Op>(buffers, b.t, tables, b.begin));
      break;
    case StateDType::BFloat16:
      acc = chunk_metrics<Op, P, G>(b, Bf16State<Op>(buffers, b.t, b.s, b.begin));
      break;
    default:
      acc = chunk_metrics<Op, P, G>(b, Fp32State<Op>(buffers, b.t, b.s, b.begin));
      break;
  }
  store_block_sum(acc, partials + blockIdx.x);
}
// The pre-step grad pass (prepare_grads), kernel 1: the GradPartial of one chunk per block
// into partials[blockIdx.x], over the unscaled grads g * inv_scale (the fp32 product, as
// transform_grad's first step computes it), added as metrics_kernel adds its sums: steps 1
// and 2 of NOTE(deterministic reductions) (block_reduce.h).
template <class Op, DType G>
__global__ void __launch_bounds__(kThreads)
    grad_partials_kernel(const typename Op::Tensor* __restrict__ tensors, const BlockWork* __restrict__ work,
                         const void* const* __restrict__ grads, float inv_scale, GradPartial* __restrict__ partials) {
  const BlockWork item = work[blockIdx.x];
  const typename Op::Tensor& t = tensors[item.tensor];
  const int64_t begin = int64_t(item.chunk) * kChunkElements;
  const int64_t left = t.numel - begin;
  const int n = int(left < kChunkElements ? left : kChunkElements);
  const storage_t<G>* grad = static_cast<const storage_t<G>*>(grads[item.tensor]) + begin;

  const bool aligned = vec_aligned(grad);
  const int full_end = n - n % kVec;
  GradPartial acc;
  for (int i = threadIdx.x * kVec; i < n; i += kThreads * kVec) {
    if (aligned && i < full_end) {
      float g[kVec];
      load<G, kVec>(grad + i, g);
#pragma unroll
      for (int k = 0; k < kVec; ++k) acc.add(g[k] * inv_scale);
    } else {
      for (int k = i; k < i + kVec && k < n; ++k) {
        float g[1];
        load<G, 1>(grad + k, g);
        acc.add(g[0] * inv_scale);
      }
    }
  }

  // The same tree as store_block_sum.
  __shared__ double sum_sq[kThreads];
  __shared__ int32_t nonfinite[kThreads];
  const int tid = threadIdx.x;
  sum_sq[tid] = acc.sum_sq;
  nonfinite[tid] = acc.nonfinite;
  __syncthreads();
#pragma unroll
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (tid < stride) {
      sum_sq[tid] += sum_sq[tid + stride];
      nonfinite[tid] += nonfinite[tid + stride];  // at most kChunkElements: no overflow
    }
    __syncthreads();
  }
  if (tid == 0) {
    GradPartial out;
    out.sum_sq = sum_sq[0];
    out.nonfinite = nonfinite[0];
    partials[blockIdx.x] = out;
  }
}

// The blocks of one tensor in the block map: [first, first + count), chunk 0 first.
struct TensorBlocks {
  int32_t first;
  int32_t count;
};

// The pre-step grad pass, kernel 2, one block: thread t sums the block partials of tensors
// t, t + kThreads, ... in block (chunk) order; then thread 0 adds the tensor sums in tensor
// order for the global one and writes found_inf; then every tensor's clip coefficient goes
// to coefs. Without partials (nothing to measure) every sum is 0 and nothing is non-finite.
// This is step 3 of NOTE(deterministic reductions) (block_reduce.h). A template, as every kernel of
// this header, so that the translation units that include it do not define it twice.
template <class Op>
__global__ void __launch_bounds__(kThreads)
    grad_finalize_kernel(const TensorBlocks* __restrict__ ranges, int32_t tensor_count,
                         const GradPartial* __restrict__ partials, GradPrepass pass, double* __restrict__ tensor_sums,
                         float* __restrict__ coefs, int32_t* __restrict__ found_inf) {
  __shared__ double global_sum;
  int bad = 0;
  for (int32_t t = threadIdx.x; t < tensor_count; t += kThreads) {
    double sum = 0;
    if (partials) {
      const TensorBlocks r = ranges[t];
      for (int32_t b = r.first; b < r.first + r.count; ++b) {
        const GradPartial p = partials[b];
        sum += p.sum_sq;
        bad |= p.nonfinite != 0;
      }
    }
    tensor_sums[t] = sum;
  }
  // A barrier like __syncthreads (tensor_sums visible to the whole block) that also ORs `bad`.
  const int any_bad = __syncthreads_or(bad);
  if (threadIdx.x == 0) {
    double sum = 0;
    for (int32_t t = 0; t < tensor_count; ++t) sum += tensor_sums[t];
    global_sum = sum;
    *found_inf = (pass.check_finite && any_bad) ? 1 : 0;
  }
  __syncthreads();
  const double global = global_sum;
  for (int32_t t = threadIdx.x; t < tensor_count; t += kThreads) {
    coefs[t] = pass.clip == ClipMode::None ? 1.0f : clip_coefficient(pass.clip, tensor_sums[t], global, pass.max_norm);
  }
}

// ---------------------------------------------------------------------------------------
// Host-side pieces

// Device memory that grows and never shrinks. Growing releases the old memory after the
// work already queued (NOTE(stream-ordered release) in cuda_memory.cu), so no caller waits.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { device_free(ptr_); }

  void* get() const { return ptr_; }
  size_t capacity() const { return capacity_; }

  // Makes room for `bytes`, losing the contents (queued work keeps the old memory).
  void reserve(size_t bytes, const std::string& what) {
    if (bytes <= capacity_) return;
    void* fresh = nullptr;
    check(cudaMalloc(&fresh, bytes), what.c_str());
    device_free(ptr_);
    ptr_ = fresh;
    capacity_ = bytes;
  }

 private:
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
};

// The blocks of one launch: work[first_block, first_block + blocks). pass: which step kernel
// (the others differ only in their dtype pair).
struct Launch {
  int combo;
  StepPass pass;
  int32_t first_block;
  int32_t blocks;
};

// One kernel per dtype combination, in kCombos order.
template <class Op>
using StepFn = void (*)(const typename Op::Tensor*, const BlockWork*, const void* const*, SlotTable<typename Op::Slot>,
                        const typename Op::Slot*, const int32_t*, const float*, const CodeTables*);
template <class Op>
using MetricsFn = void (*)(const typename Op::Tensor*, const BlockWork*, const void* const*,
                           SlotTable<typename Op::Slot>, const typename Op::Slot*, const CodeTables*, MetricSums*);

template <class Op, StepPass Pass, size_t... I>
constexpr std::array<StepFn<Op>, kComboCount> step_kernels(std::index_sequence<I...>) {
  return {{step_kernel<Op, kCombos[I].param, kCombos[I].grad, Pass>...}};
}
template <class Op, size_t... I>
constexpr std::array<MetricsFn<Op>, kComboCount> metrics_kernels(std::index_sequence<I...>) {
  return {{metrics_kernel<Op, kCombos[I].param, kCombos[I].grad>...}};
}
template <class Op>
using GradPartialsFn = void (*)(const typename Op::Tensor*, const BlockWork*, const void* const*, float, GradPartial*);
template <class Op, size_t... I>
constexpr std::array<GradPartialsFn<Op>, kComboCount> grad_partials_kernels(std::index_sequence<I...>) {
  return {{grad_partials_kernel<Op, kCombos[I].grad>...}};
}

// One optimizer's launches: its own stream, the device-resident table of the last
// set_tensors, this step's grad pointers, the step's slots, and the metric partials. The
// public launchers wrap one. Nothing here makes the host wait on the step path: tables go
// out through pinned buffers (pinned_uploads.cuh), and memory that queued work may still use
// is released after it (NOTE(stream-ordered release), cuda_memory.cu).
template <class Op>
class Launcher {
 public:
  using Tensor = typename Op::Tensor;
  using Slot = typename Op::Slot;

  // Kernel parameters are limited to 4 KiB on every driver we support.
  static_assert(sizeof(SlotTable<Slot>) + 8 * sizeof(void*) <= 4096, "kernel parameters too large");

  Launcher() {
    // A blocking stream (not cudaStreamNonBlocking): the synchronous cudaMemcpy of tensor
    // reads and writes on the legacy default stream then orders with our kernels.
    check(cudaStreamCreate(&stream_), "cudaStreamCreate");
    register_stream(stream_);
  }

  ~Launcher() {
    // Queued steps read our buffers: let them finish before the members free them. Errors
    // are ignored: a destructor must not throw, and in process teardown the runtime may
    // already be gone.
    if (stream_) {
      (void)cudaStreamSynchronize(stream_);
      unregister_stream(stream_);
      (void)cudaStreamDestroy(stream_);
    }
    (void)cudaGetLastError();
  }

  Launcher(const Launcher&) = delete;
  Launcher& operator=(const Launcher&) = delete;

  cudaStream_t stream() const { return stream_; }

  // Checks the table, builds the block map and uploads both, with the table's grad pointers
  // as this step's (set_grads changes them). A rejected table leaves the previous one in use.
  void set_tensors(const std::vector<Tensor>& tensors) {
    const std::string fn = std::string(Op::kLauncher) + "::set_tensors";
    if (tensors.size() > size_t(std::numeric_limits<int32_t>::max())) {
      throw std::runtime_error(fn + ": too many tensors");
    }

    std::vector<int> combo_of(tensors.size());
    int32_t max_slot = -1;
    bool any_coded = false;  // a tensor with 8-bit state: the kernels need the code tables
    for (size_t i = 0; i < tensors.size(); ++i) {
      const Tensor& t = tensors[i];
      const std::string where = fn + ": tensor " + std::to_string(i);
      combo_of[i] = combo_index(t.param_dtype, t.grad_dtype);
      if (combo_of[i] < 0) {
        throw std::runtime_error(where + ": unsupported dtypes (param " + dtype_name(t.param_dtype) + ", grad " +
                                 dtype_name(t.grad_dtype) + ")");
      }
      if (t.numel < 0) throw std::runtime_error(where + ": negative numel");
      if (t.numel == 0) continue;
      if (!Op::has_arrays(t)) {
        throw std::runtime_error(where + ": null " + Op::kArrays + " pointer");
      }
      if (t.slot < 0) throw std::runtime_error(where + ": negative slot");
      if ((t.numel - 1) / kChunkElements >= std::numeric_limits<int32_t>::max()) {
        throw std::runtime_error(where + ": too many elements");
      }
      // The kernels divide by row_width: the one check of the sparse plan that guards the
      // device (the engine checks the rows themselves).
      if (t.rows && (t.row_width <= 0 || t.numel % t.row_width != 0)) {
        throw std::runtime_error(where + ": row-sparse grad with invalid row width");
      }
      check_state_format(t, where);
      any_coded = any_coded || t.state.dtype == StateDType::Uint8;
      max_slot = std::max(max_slot, t.slot);
    }

    // Blocks grouped by dtype pair and then by kind (step_pass: fp32, bf16 or 8-bit state,
    // row-sparse grads), each group one launch; within a group tensor order, so neighbouring blocks stream neighbouring
    // memory. This order is also the order in which metrics() adds a tensor's chunk
    // partials: chunk 0, 1, 2, ...
    std::vector<BlockWork> work;
    std::vector<Launch> launches;
    for (int combo = 0; combo < kComboCount; ++combo) {
      for (int pass = 0; pass < kStepPasses; ++pass) {
        const size_t first = work.size();
        for (size_t i = 0; i < tensors.size(); ++i) {
          if (combo_of[i] != combo || int(step_pass(tensors[i])) != pass) continue;
          const int64_t chunks = (tensors[i].numel + kChunkElements - 1) / kChunkElements;
          for (int64_t chunk = 0; chunk < chunks; ++chunk) {
            work.push_back({int32_t(i), int32_t(chunk)});
          }
        }
        if (work.size() > size_t(std::numeric_limits<int32_t>::max())) {
          throw std::runtime_error(fn + ": too many elements in all");
        }
        if (work.size() > first) {
          launches.push_back({combo, StepPass(pass), int32_t(first), int32_t(work.size() - first)});
        }
      }
    }
    // Each tensor's blocks lie together in the map, chunk 0 first (the order in which
    // prepare_grads adds their partials).
    std::vector<TensorBlocks> ranges(tensors.size(), TensorBlocks{0, 0});
    for (size_t b = 0; b < work.size(); ++b) {
      TensorBlocks& r = ranges[size_t(work[b].tensor)];
      if (r.count == 0) r.first = int32_t(b);
      ++r.count;
    }

    ready_ = false;
    prepass_ready_ = false;  // its coefficients belong to the old table
    launches_.clear();
    tensor_staging_ = tensors;
    work_staging_ = std::move(work);
    const size_t tensor_bytes = tensor_staging_.size() * sizeof(Tensor);
    const size_t work_bytes = work_staging_.size() * sizeof(BlockWork);
    const size_t ranges_bytes = ranges.size() * sizeof(TensorBlocks);
    // An optimizer that uses the pre-step pass gets its buffers grown here, not per step.
    if (found_inf_.get()) reserve_prepass();
    if (any_coded && !code_tables_ready_) {
      upload(code_tables_, &host_code_tables(), sizeof(CodeTables), "code tables");
      code_tables_ready_ = true;  // never changes: uploaded once per launcher
    }
    upload(tensors_, tensor_staging_.data(), tensor_bytes, "tensor table");
    upload(work_, work_staging_.data(), work_bytes, "block table");
    upload(ranges_, ranges.data(), ranges_bytes, "tensor block ranges");
    grads_staging_.resize(tensor_staging_.size());
    for (size_t i = 0; i < tensor_staging_.size(); ++i) grads_staging_[i] = tensor_staging_[i].grad;
    upload(grads_, grads_staging_.data(), grads_staging_.size() * sizeof(const void*), "grad pointers");
    launches_ = std::move(launches);
    max_slot_ = max_slot;
    ready_ = true;
  }

  // This step's grad pointers, grads[i] for tensor i of the table (same count, dtypes and
  // sizes as the table's: the engine checks). Uploaded only when they changed, without a wait.
  void set_grads(const std::vector<const void*>& grads) {
    const std::string fn = std::string(Op::kLauncher) + "::set_grads";
    if (!ready_) throw std::runtime_error(fn + ": the last set_tensors failed");
    if (grads.size() != tensor_staging_.size()) throw std::runtime_error(fn + ": wrong number of grads");
    for (size_t i = 0; i < grads.size(); ++i)
      if (!grads[i] && tensor_staging_[i].numel > 0) throw std::runtime_error(fn + ": null grad");
    if (grads == grads_staging_) return;
    upload(grads_, grads.data(), grads.size() * sizeof(const void*), "grad pointers");
    grads_staging_ = grads;  // only once uploaded: a failed upload is retried by the next step
  }

  // The checks every use of a slot table needs; `fn` names the caller in errors.
  void check_slots(const Slot* slots, int slot_count, const char* fn) const {
    if (!ready_) throw std::runtime_error(std::string(fn) + ": the last set_tensors failed");
    if (slot_count < 0 || (slot_count > 0 && slots == nullptr)) {
      throw std::runtime_error(std::string(fn) + ": invalid slot table");
    }
    if (max_slot_ >= slot_count) {
      throw std::runtime_error(std::string(fn) + ": a tensor uses slot " + std::to_string(max_slot_) + " but only " +
                               std::to_string(slot_count) + " slots were given");
    }
  }

  size_t tensor_count() const { return tensor_staging_.size(); }

  // Enqueues one step of every tensor; returns without waiting. Slots already checked. With
  // use_prepass the kernels read the found_inf flag and clip coefficients that the last
  // prepare_grads (since set_tensors) leaves on the device. Throws NothingLaunched when it
  // fails before any kernel was queued (the step changed nothing), anything else when it
  // fails part way.
  void launch(const Slot* slots, int slot_count, bool use_prepass) {
    if (use_prepass && !prepass_ready_) {
      throw NothingLaunched(std::string(Op::kLauncher) +
                            "::launch: use_prepass without a prepare_grads since the last set_tensors");
    }
    if (launches_.empty()) return;
    poll_releases();
    SlotArgs args;
    try {
      args = pass_slots(slots, slot_count);
    } catch (const std::exception& e) {
      throw NothingLaunched(e.what());
    }
    static constexpr std::array<std::array<StepFn<Op>, kComboCount>, kStepPasses> kKernels = {
        step_kernels<Op, StepPass::Float32>(std::make_index_sequence<kComboCount>()),
        step_kernels<Op, StepPass::BFloat16>(std::make_index_sequence<kComboCount>()),
        step_kernels<Op, StepPass::Coded>(std::make_index_sequence<kComboCount>()),
        step_kernels<Op, StepPass::Sparse>(std::make_index_sequence<kComboCount>())};
    const auto* table = static_cast<const Tensor*>(tensors_.get());
    const auto* work = static_cast<const BlockWork*>(work_.get());
    const auto* grads = static_cast<const void* const*>(grads_.get());
    const auto* found_inf = use_prepass ? static_cast<const int32_t*>(found_inf_.get()) : nullptr;
    const auto* coefs = use_prepass ? static_cast<const float*>(coefs_.get()) : nullptr;
    (void)cudaGetLastError();  // a stale error from elsewhere must not be blamed on our launch
    for (size_t k = 0; k < launches_.size(); ++k) {
      const Launch& l = launches_[k];
      const StepFn<Op> kernel = kKernels[int(l.pass)][l.combo];
      FO_LAUNCH(kernel, unsigned(l.blocks), kThreads, 0, stream_)
      (table, work + l.first_block, grads, args.inline_slots, args.buffer, found_inf, coefs, code_tables());
      const cudaError_t e = cudaGetLastError();
      if (e == cudaSuccess) continue;
      const std::string message = "CUDA error " + error_text(e) + " (in " + what("kernel launch", "step") + ")";
      if (k == 0) throw NothingLaunched(message);
      throw std::runtime_error(message + " after " + std::to_string(k) + " of " + std::to_string(launches_.size()) +
                               " launches of the step were queued");
    }
  }

  // Enqueues the pre-step pass over the grads of the last set_tensors on our stream: kernel 1
  // (one block per chunk, one launch per dtype pair) reduces each chunk's grads into a
  // GradPartial; kernel 2 (one block) adds them per tensor in chunk order and over tensors
  // in tensor order, and leaves found_inf and every tensor's clip coefficient on the device.
  // Kernel 1 is skipped when there is nothing to measure (no finiteness check, no clipping).
  // Returns without waiting.
  void prepare_grads(const GradPrepass& pass) {
    const std::string fn = std::string(Op::kLauncher) + "::prepare_grads";
    if (!ready_) throw std::runtime_error(fn + ": the last set_tensors failed");
    if (pass.clip != ClipMode::None && pass.clip != ClipMode::GlobalNorm && pass.clip != ClipMode::TensorNorm) {
      throw std::runtime_error(fn + ": unknown clip mode " + std::to_string(static_cast<int32_t>(pass.clip)));
    }
    prepass_ready_ = false;
    reserve_prepass();

    const bool measure = pass.check_finite || pass.clip != ClipMode::None;
    const auto* table = static_cast<const Tensor*>(tensors_.get());
    const auto* work = static_cast<const BlockWork*>(work_.get());
    const auto* grads = static_cast<const void* const*>(grads_.get());
    auto* partials = static_cast<GradPartial*>(grad_partials_.get());
    static constexpr auto kPartials = grad_partials_kernels<Op>(std::make_index_sequence<kComboCount>());
    (void)cudaGetLastError();  // a stale error from elsewhere must not be blamed on our launch
    if (measure) {
      for (const Launch& l : launches_) {
        // Block b of the whole map writes partials[b], whichever launch runs it.
        FO_LAUNCH(kPartials[l.combo], unsigned(l.blocks), kThreads, 0, stream_)
        (table, work + l.first_block, grads, pass.inv_scale, partials + l.first_block);
        check(cudaGetLastError(), what("kernel launch", "grad partials").c_str());
      }
    }
    FO_LAUNCH(grad_finalize_kernel<Op>, 1, kThreads, 0, stream_)
    (static_cast<const TensorBlocks*>(ranges_.get()), int32_t(tensor_staging_.size()),
     measure && !launches_.empty() ? partials : nullptr, pass, static_cast<double*>(tensor_sums_.get()),
     static_cast<float*>(coefs_.get()), static_cast<int32_t*>(found_inf_.get()));
    check(cudaGetLastError(), what("kernel launch", "grad finalize").c_str());
    prepass_ready_ = true;
  }

  // The found_inf flag of the last prepare_grads, after waiting for the stream.
  bool read_found_inf() {
    if (!found_inf_.get()) {
      throw std::runtime_error(std::string(Op::kLauncher) + "::read_found_inf: prepare_grads was never called");
    }
    int32_t flag = 0;
    check(cudaMemcpyAsync(&flag, found_inf_.get(), sizeof(flag), cudaMemcpyDeviceToHost, stream_),
          what("cudaMemcpyAsync", "found_inf").c_str());
    check(cudaStreamSynchronize(stream_), what("cudaStreamSynchronize", "found_inf").c_str());
    return flag != 0;
  }

  void synchronize() {
    check(cudaStreamSynchronize(stream_),
          (std::string(Op::kLauncher) + "::synchronize (cudaStreamSynchronize)").c_str());
  }

  // out[i] = the metric sums of tensor i, synchronously. Slots already checked. Summed as
  // NOTE(deterministic reductions) (block_reduce.h) says: each chunk by metrics_kernel, then
  // a tensor's block partials on the host in chunk order, starting from zero.
  void metrics(const Slot* slots, int slot_count, MetricSums* out) {
    const size_t count = tensor_staging_.size();
    if (count > 0 && out == nullptr) {
      throw std::runtime_error(std::string(Op::kLauncher) + "::metrics: null output");
    }
    for (size_t i = 0; i < count; ++i) out[i] = MetricSums{};
    if (launches_.empty()) return;

    const size_t blocks = work_staging_.size();
    const size_t bytes = blocks * sizeof(MetricSums);
    partials_.reserve(bytes, what("cudaMalloc", "metric partials"));
    const SlotArgs args = pass_slots(slots, slot_count);

    static constexpr auto kKernels = metrics_kernels<Op>(std::make_index_sequence<kComboCount>());
    const auto* table = static_cast<const Tensor*>(tensors_.get());
    const auto* work = static_cast<const BlockWork*>(work_.get());
    const auto* grads = static_cast<const void* const*>(grads_.get());
    auto* partials = static_cast<MetricSums*>(partials_.get());
    (void)cudaGetLastError();  // a stale error from elsewhere must not be blamed on our launch
    for (const Launch& l : launches_) {
      // Block b of the whole map writes partials[b], whichever launch runs it.
      FO_LAUNCH(kKernels[l.combo], unsigned(l.blocks), kThreads, 0, stream_)
      (table, work + l.first_block, grads, args.inline_slots, args.buffer, code_tables(), partials + l.first_block);
      check(cudaGetLastError(), what("kernel launch", "metrics").c_str());
    }

    // On our stream, after the kernels (and after any step queued before this call).
    partials_host_.resize(blocks);
    check(cudaMemcpyAsync(partials_host_.data(), partials, bytes, cudaMemcpyDeviceToHost, stream_),
          what("cudaMemcpyAsync", "metric partials").c_str());
    check(cudaStreamSynchronize(stream_), what("cudaStreamSynchronize", "metrics").c_str());

    // work_staging_ lists each tensor's blocks together, chunk 0 first: adding the partials
    // in block order sums every tensor in chunk order.
    for (size_t b = 0; b < blocks; ++b) out[work_staging_[b].tensor].add(partials_host_[b]);
  }

 private:
  // How a launch receives the step's slots: inline, or (buffer non-null) from the device.
  struct SlotArgs {
    SlotTable<Slot> inline_slots{};
    const Slot* buffer = nullptr;
  };

  SlotArgs pass_slots(const Slot* slots, int slot_count) {
    SlotArgs args;
    if (slot_count <= kInlineSlots) {
      if (slot_count > 0) std::memcpy(args.inline_slots.s, slots, size_t(slot_count) * sizeof(Slot));
      return args;
    }
    // More than kInlineSlots slots: copied to the device on our stream, ahead of the launch.
    const size_t bytes = size_t(slot_count) * sizeof(Slot);
    upload(slots_, slots, bytes, "slots");
    args.buffer = static_cast<const Slot*>(slots_.get());
    return args;
  }

  // `bytes` from host memory to `buffer` (grown as needed) on our stream, without a wait.
  void upload(DeviceBuffer& buffer, const void* src, size_t bytes, const char* object) {
    if (bytes == 0) return;
    buffer.reserve(bytes, what("cudaMalloc", object));
    uploads_.upload(buffer.get(), src, bytes, stream_, std::string(Op::kLauncher) + " " + object);
  }

  // Makes the pre-step pass's buffers fit the current table.
  void reserve_prepass() {
    const size_t partial_bytes = work_staging_.size() * sizeof(GradPartial);
    const size_t sum_bytes = tensor_staging_.size() * sizeof(double);
    const size_t coef_bytes = tensor_staging_.size() * sizeof(float);
    found_inf_.reserve(sizeof(int32_t), what("cudaMalloc", "found_inf"));
    if (partial_bytes > 0) grad_partials_.reserve(partial_bytes, what("cudaMalloc", "grad partials"));
    if (sum_bytes > 0) tensor_sums_.reserve(sum_bytes, what("cudaMalloc", "tensor grad sums"));
    if (coef_bytes > 0) coefs_.reserve(coef_bytes, what("cudaMalloc", "clip coefficients"));
  }

  // The state format of a non-empty tensor: one the kernels know (set_tensors).
  static void check_state_format(const Tensor& t, const std::string& where) {
    switch (t.state.dtype) {
      case StateDType::Float32:
        return;
      case StateDType::BFloat16:
      case StateDType::Uint8:
        break;
      default:
        throw std::runtime_error(where + ": unknown state dtype " + std::to_string(int(t.state.dtype)));
    }
    if (t.state.dtype == StateDType::Uint8 && !valid_quant_block(t.state.block)) {
      throw std::runtime_error(where + ": 8-bit state with block size " + std::to_string(t.state.block) +
                               " (256 or 2048)");
    }
    // The engine keeps fp32 state for lazy (row-sparse) steps: a block's absmax would need
    // every element of the block, not only the rows of the grad.
    if (t.rows)
      throw std::runtime_error(where + ": row-sparse grad with " + kStateDTypeNames[int(t.state.dtype)] + " state");
  }

  // The code maps and midpoints, built on the host once per process (they are constants).
  static const CodeTables& host_code_tables() {
    static const CodeTables tables = [] {
      CodeTables t{};
      for (const bool is_signed : {true, false}) {
        std::memcpy(t.map[code_table(is_signed)], host_code_map(is_signed), sizeof(t.map[0]));
        std::memcpy(t.mid[code_table(is_signed)], host_code_midpoints(is_signed), sizeof(t.mid[0]));
      }
      return t;
    }();
    return tables;
  }

  // The device copy, once a table with 8-bit state has been set (else null: no kernel reads it).
  const CodeTables* code_tables() const {
    return code_tables_ready_ ? static_cast<const CodeTables*>(code_tables_.get()) : nullptr;
  }

  // "cudaMalloc (AdamWLauncher tensor table)"
  static std::string what(const char* call, const char* object) {
    return std::string(call) + " (" + Op::kLauncher + " " + object + ")";
  }

  cudaStream_t stream_ = nullptr;
  PinnedUploads uploads_;

  // The table of the last set_tensors, on the device, and on the host for the counts and
  // for mapping metric partials back to tensors.
  DeviceBuffer tensors_, work_;
  std::vector<Tensor> tensor_staging_;
  std::vector<BlockWork> work_staging_;
  std::vector<Launch> launches_;
  int32_t max_slot_ = -1;  // the highest slot a non-empty tensor uses
  bool ready_ = true;      // false after a set_tensors that failed half way
  // Each tensor's blocks in the map, for the pre-step pass.
  DeviceBuffer ranges_;
  // This step's grad pointers, one per tensor of the table (set_grads).
  DeviceBuffer grads_;
  std::vector<const void*> grads_staging_;

  // More than kInlineSlots slots: copied to the device per launch.
  DeviceBuffer slots_;

  // One MetricSums per block of the map, on the device and on the host.
  DeviceBuffer partials_;
  std::vector<MetricSums> partials_host_;

  // The pre-step pass: a GradPartial per block, a float64 sum per tensor (scratch), and
  // what launch(use_prepass) reads: a clip coefficient per tensor and the found_inf flag
  // (allocated by the first prepare_grads; non-null means the pass has been used).
  DeviceBuffer grad_partials_, tensor_sums_, coefs_, found_inf_;
  bool prepass_ready_ = false;  // prepare_grads ran since the last set_tensors

  // The code maps of 8-bit state (CodeTables, state_access.cuh), uploaded by the first
  // set_tensors that has a tensor with 8-bit state.
  DeviceBuffer code_tables_;
  bool code_tables_ready_ = false;
};

}  // namespace fo::cuda::mt
