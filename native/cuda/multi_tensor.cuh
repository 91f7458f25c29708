#pragma once
// The multi-tensor machinery shared by the CUDA optimizers (after PyTorch's
// MultiTensorApply.cuh and llm.c's adamw.cuh); internal to the CUDA backend.
//
// An optimizer plugs in an Op describing its tensors and one chunk's element work:
//
//   struct Op {
//     using Tensor = ...;                       // AdamWTensor, LionTensor: has param, grad,
//     using Slot = ...;                         //   master, numel, slot, param/grad dtypes
//     static constexpr const char* kLauncher;   // "AdamWLauncher", for error messages
//     static constexpr const char* kArrays;     // "param, grad or moment"
//     static bool has_arrays(const Tensor&);    // the arrays a non-empty tensor needs
//     template <DType P, DType G> struct Chunk {    // device side, one chunk of one tensor
//       __device__ Chunk(const Tensor&, const Slot&, int64_t begin);
//       __device__ bool aligned() const;            // every array it touches fits kVec
//       template <int N> __device__ void update(int i, const Slot&) const;
//       template <int N> __device__ void metrics(int i, const Slot&, MetricSums&) const;
//     };
//   };
//
// and gets from here: the generic step and metrics kernels, the device-resident tensor table
// and block -> (tensor, chunk) map, one launch per (param dtype, grad dtype) combination,
// the step's slots passed inline or through a device buffer, and the deterministic
// reduction of per-block metric partials.
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
#include "../common/dtype.h"
#include "../common/metrics.h"
#include "cuda_backend.h"
#include "cuda_check.h"
#include "element_access.cuh"

namespace fo::cuda::mt {

constexpr int kThreads = 256;  // threads per block; one block per chunk
constexpr int kVec = 4;        // elements per thread per iteration on the aligned path
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
    {DType::Float32, DType::Float32},   {DType::Float16, DType::Float32},
    {DType::Float16, DType::Float16},   {DType::BFloat16, DType::Float32},
    {DType::BFloat16, DType::BFloat16},
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
template <DType P>
struct ParamRef {
  storage_t<P>* param;
  float* master;  // the fp32 value of a half param; null for fp32 params (and half without one)

  __device__ ParamRef(void* p, float* m, int64_t begin)
      : param(static_cast<storage_t<P>*>(p) + begin),
        // An fp32 param is its own master: whatever the table says, it is not used.
        master(P != DType::Float32 && m ? m + begin : nullptr) {}

  __device__ bool aligned() const { return vec_aligned(param) && vec_aligned(master); }

  // Elements [i, i + N) as fp32: the master when there is one, so the rule never sees a
  // value rounded to 16 bits; else the param (a half param without a master is updated in
  // its own precision, rounded after every step).
  template <int N>
  __device__ __forceinline__ void load(int i, float (&w)[N]) const {
    if constexpr (P != DType::Float32) {
      if (master) {
        fo::cuda::load<DType::Float32, N>(master + i, w);
        return;
      }
    }
    fo::cuda::load<P, N>(param + i, w);
  }

  // A half param is refreshed from its master in the same pass, so p.data never lags.
  template <int N>
  __device__ __forceinline__ void store(int i, const float (&w)[N]) const {
    if constexpr (P != DType::Float32) {
      if (master) fo::cuda::store<DType::Float32, N>(master + i, w);
    }
    fo::cuda::store<P, N>(param + i, w);
  }
};

// What one block works on: its tensor's entry, its slot and its chunk's extent.
template <class Op>
struct BlockItem {
  typename Op::Tensor t;
  typename Op::Slot s;
  int64_t begin;  // first element of the chunk in the tensor
  int n;          // elements in the chunk (kChunkElements but for a tensor's last chunk)
};

template <class Op>
__device__ __forceinline__ BlockItem<Op> block_item(
    const typename Op::Tensor* __restrict__ tensors, const BlockWork* __restrict__ work,
    const SlotTable<typename Op::Slot>& inline_slots,
    const typename Op::Slot* __restrict__ slot_buffer) {
  BlockItem<Op> b;
  const BlockWork item = work[blockIdx.x];
  b.t = tensors[item.tensor];
  b.s = slot_buffer ? slot_buffer[b.t.slot] : inline_slots.s[b.t.slot];
  b.begin = int64_t(item.chunk) * kChunkElements;
  const int64_t left = b.t.numel - b.begin;
  b.n = int(left < kChunkElements ? left : kChunkElements);
  return b;
}

// One optimizer step: one block per chunk of one tensor; all tensors of this dtype pair in
// a single launch.
template <class Op, DType P, DType G>
__global__ void __launch_bounds__(kThreads)
    step_kernel(const typename Op::Tensor* __restrict__ tensors,
                const BlockWork* __restrict__ work, SlotTable<typename Op::Slot> inline_slots,
                const typename Op::Slot* __restrict__ slot_buffer) {
  const BlockItem<Op> b = block_item<Op>(tensors, work, inline_slots, slot_buffer);
  const typename Op::template Chunk<P, G> c(b.t, b.s, b.begin);

  // Uniform across the block, so the branch costs no divergence.
  int tail_begin = 0;
  if (c.aligned()) {
    tail_begin = b.n - b.n % kVec;
    for (int i = threadIdx.x * kVec; i < tail_begin; i += kThreads * kVec) {
      c.template update<kVec>(i, b.s);
    }
  }
  // Misaligned tensors, and the last n % kVec elements of an aligned one. Elements are
  // independent, so the scalar path may visit them in the most coalesced order.
  for (int i = tail_begin + threadIdx.x; i < b.n; i += kThreads) c.template update<1>(i, b.s);
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

// Writes the sum of every thread's `mine` to *out. A fixed tree over shared memory (thread
// t adds t + stride, halving the stride) rather than atomics, so the bits never depend on
// scheduling. Called by all kThreads threads of the block.
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

// The metric sums of one chunk per block into partials[blockIdx.x]; nothing else is written.
template <class Op, DType P, DType G>
__global__ void __launch_bounds__(kThreads)
    metrics_kernel(const typename Op::Tensor* __restrict__ tensors,
                   const BlockWork* __restrict__ work, SlotTable<typename Op::Slot> inline_slots,
                   const typename Op::Slot* __restrict__ slot_buffer,
                   MetricSums* __restrict__ partials) {
  const BlockItem<Op> b = block_item<Op>(tensors, work, inline_slots, slot_buffer);
  const typename Op::template Chunk<P, G> c(b.t, b.s, b.begin);

  // Thread t owns the groups of kVec elements starting at kVec * (t + k * kThreads) and adds
  // their elements in index order, by vector loads when the chunk is aligned and one by one
  // when not (or for the last, partial group). Either way each thread adds the same elements
  // in the same order, so the sums depend on the values only, not on the addresses.
  const bool aligned = c.aligned();
  const int full_end = b.n - b.n % kVec;
  MetricSums acc;
  for (int i = threadIdx.x * kVec; i < b.n; i += kThreads * kVec) {
    if (aligned && i < full_end) {
      c.template metrics<kVec>(i, b.s, acc);
    } else {
      for (int k = i; k < i + kVec && k < b.n; ++k) c.template metrics<1>(k, b.s, acc);
    }
  }
  store_block_sum(acc, partials + blockIdx.x);
}

// ---------------------------------------------------------------------------------------
// Host-side pieces

// Device memory that grows and never shrinks.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { device_free(ptr_); }

  void* get() const { return ptr_; }
  size_t capacity() const { return capacity_; }

  // Makes room for `bytes`, losing the contents. The caller has made sure that no queued
  // work still reads the old memory.
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

// The blocks of one launch: work[first_block, first_block + blocks).
struct Launch {
  int combo;
  int32_t first_block;
  int32_t blocks;
};

// One kernel per dtype combination, in kCombos order.
template <class Op>
using StepFn = void (*)(const typename Op::Tensor*, const BlockWork*,
                        SlotTable<typename Op::Slot>, const typename Op::Slot*);
template <class Op>
using MetricsFn = void (*)(const typename Op::Tensor*, const BlockWork*,
                           SlotTable<typename Op::Slot>, const typename Op::Slot*, MetricSums*);

template <class Op, size_t... I>
constexpr std::array<StepFn<Op>, kComboCount> step_kernels(std::index_sequence<I...>) {
  return {{step_kernel<Op, kCombos[I].param, kCombos[I].grad>...}};
}
template <class Op, size_t... I>
constexpr std::array<MetricsFn<Op>, kComboCount> metrics_kernels(std::index_sequence<I...>) {
  return {{metrics_kernel<Op, kCombos[I].param, kCombos[I].grad>...}};
}

// One optimizer's launches: its own stream, the device-resident table of the last
// set_tensors, the step's slots, and the metric partials. The public launchers wrap one.
template <class Op>
class Launcher {
 public:
  using Tensor = typename Op::Tensor;
  using Slot = typename Op::Slot;

  // Kernel parameters are limited to 4 KiB on every driver we support.
  static_assert(sizeof(SlotTable<Slot>) + 4 * sizeof(void*) <= 4096,
                "kernel parameters too large");

  Launcher() {
    // A blocking stream (not cudaStreamNonBlocking): the synchronous cudaMemcpy of tensor
    // reads and writes on the legacy default stream then orders with our kernels.
    check(cudaStreamCreate(&stream_), "cudaStreamCreate");
  }

  ~Launcher() {
    // Queued steps read our buffers: let them finish before the members free them. Errors
    // are ignored: a destructor must not throw, and in process teardown the runtime may
    // already be gone.
    if (stream_) {
      (void)cudaStreamSynchronize(stream_);
      (void)cudaStreamDestroy(stream_);
    }
    if (slots_copied_) (void)cudaEventDestroy(slots_copied_);
    (void)cudaGetLastError();
  }

  Launcher(const Launcher&) = delete;
  Launcher& operator=(const Launcher&) = delete;

  // Checks the table, builds the block map and uploads both. A rejected table leaves the
  // previous one in use.
  void set_tensors(const std::vector<Tensor>& tensors) {
    const std::string fn = std::string(Op::kLauncher) + "::set_tensors";
    if (tensors.size() > size_t(std::numeric_limits<int32_t>::max())) {
      throw std::runtime_error(fn + ": too many tensors");
    }

    std::vector<int> combo_of(tensors.size());
    int32_t max_slot = -1;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const Tensor& t = tensors[i];
      const std::string where = fn + ": tensor " + std::to_string(i);
      combo_of[i] = combo_index(t.param_dtype, t.grad_dtype);
      if (combo_of[i] < 0) {
        throw std::runtime_error(where + ": unsupported dtypes (param " +
                                 dtype_name(t.param_dtype) + ", grad " +
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
      max_slot = std::max(max_slot, t.slot);
    }

    // Blocks grouped by dtype pair, each group one launch; within a group tensor order, so
    // neighbouring blocks stream neighbouring memory. This order is also the order in which
    // metrics() adds a tensor's chunk partials: chunk 0, 1, 2, ...
    std::vector<BlockWork> work;
    std::vector<Launch> launches;
    for (int combo = 0; combo < kComboCount; ++combo) {
      const size_t first = work.size();
      for (size_t i = 0; i < tensors.size(); ++i) {
        if (combo_of[i] != combo) continue;
        const int64_t chunks = (tensors[i].numel + kChunkElements - 1) / kChunkElements;
        for (int64_t chunk = 0; chunk < chunks; ++chunk) {
          work.push_back({int32_t(i), int32_t(chunk)});
        }
      }
      if (work.size() > size_t(std::numeric_limits<int32_t>::max())) {
        throw std::runtime_error(fn + ": too many elements in all");
      }
      if (work.size() > first) {
        launches.push_back({combo, int32_t(first), int32_t(work.size() - first)});
      }
    }

    // Queued steps still read the old table, and its uploads may still read the staging
    // vectors: wait for them. Tensors change rarely, so this wait is off the step's path.
    ready_ = false;
    check(cudaStreamSynchronize(stream_), (fn + " (cudaStreamSynchronize)").c_str());
    launches_.clear();
    tensor_staging_ = tensors;
    work_staging_ = std::move(work);
    const size_t tensor_bytes = tensor_staging_.size() * sizeof(Tensor);
    const size_t work_bytes = work_staging_.size() * sizeof(BlockWork);
    if (tensor_bytes > 0) {
      tensors_.reserve(tensor_bytes, what("cudaMalloc", "tensor table"));
      check(cudaMemcpyAsync(tensors_.get(), tensor_staging_.data(), tensor_bytes,
                            cudaMemcpyHostToDevice, stream_),
            what("cudaMemcpyAsync", "tensor table").c_str());
    }
    if (work_bytes > 0) {
      work_.reserve(work_bytes, what("cudaMalloc", "block table"));
      check(cudaMemcpyAsync(work_.get(), work_staging_.data(), work_bytes,
                            cudaMemcpyHostToDevice, stream_),
            what("cudaMemcpyAsync", "block table").c_str());
    }
    launches_ = std::move(launches);
    max_slot_ = max_slot;
    ready_ = true;
  }

  // The checks every use of a slot table needs; `fn` names the caller in errors.
  void check_slots(const Slot* slots, int slot_count, const char* fn) const {
    if (!ready_) throw std::runtime_error(std::string(fn) + ": the last set_tensors failed");
    if (slot_count < 0 || (slot_count > 0 && slots == nullptr)) {
      throw std::runtime_error(std::string(fn) + ": invalid slot table");
    }
    if (max_slot_ >= slot_count) {
      throw std::runtime_error(std::string(fn) + ": a tensor uses slot " +
                               std::to_string(max_slot_) + " but only " +
                               std::to_string(slot_count) + " slots were given");
    }
  }

  size_t tensor_count() const { return tensor_staging_.size(); }

  // Enqueues one step of every tensor; returns without waiting. Slots already checked.
  void launch(const Slot* slots, int slot_count) {
    if (launches_.empty()) return;
    const SlotArgs args = pass_slots(slots, slot_count);
    static constexpr auto kKernels = step_kernels<Op>(std::make_index_sequence<kComboCount>());
    const auto* table = static_cast<const Tensor*>(tensors_.get());
    const auto* work = static_cast<const BlockWork*>(work_.get());
    (void)cudaGetLastError();  // a stale error from elsewhere must not be blamed on our launch
    for (const Launch& l : launches_) {
      kKernels[l.combo]<<<unsigned(l.blocks), kThreads, 0, stream_>>>(
          table, work + l.first_block, args.inline_slots, args.buffer);
      check(cudaGetLastError(), what("kernel launch", "step").c_str());
    }
  }

  void synchronize() {
    check(cudaStreamSynchronize(stream_),
          (std::string(Op::kLauncher) + "::synchronize (cudaStreamSynchronize)").c_str());
  }

  // out[i] = the metric sums of tensor i, synchronously. Slots already checked. The sums
  // are deterministic: each block reduces its chunk in a fixed order (metrics_kernel), and
  // the host adds a tensor's block partials in chunk order, starting from zero.
  void metrics(const Slot* slots, int slot_count, MetricSums* out) {
    const size_t count = tensor_staging_.size();
    if (count > 0 && out == nullptr) {
      throw std::runtime_error(std::string(Op::kLauncher) + "::metrics: null output");
    }
    for (size_t i = 0; i < count; ++i) out[i] = MetricSums{};
    if (launches_.empty()) return;

    const size_t blocks = work_staging_.size();
    const size_t bytes = blocks * sizeof(MetricSums);
    if (bytes > partials_.capacity()) {
      // Growing frees the old buffer, which an earlier call's kernels might still write
      // (one that threw half way).
      check(cudaStreamSynchronize(stream_), what("cudaStreamSynchronize", "metrics").c_str());
    }
    partials_.reserve(bytes, what("cudaMalloc", "metric partials"));
    const SlotArgs args = pass_slots(slots, slot_count);

    static constexpr auto kKernels =
        metrics_kernels<Op>(std::make_index_sequence<kComboCount>());
    const auto* table = static_cast<const Tensor*>(tensors_.get());
    const auto* work = static_cast<const BlockWork*>(work_.get());
    auto* partials = static_cast<MetricSums*>(partials_.get());
    (void)cudaGetLastError();  // a stale error from elsewhere must not be blamed on our launch
    for (const Launch& l : launches_) {
      // Block b of the whole map writes partials[b], whichever launch runs it.
      kKernels[l.combo]<<<unsigned(l.blocks), kThreads, 0, stream_>>>(
          table, work + l.first_block, args.inline_slots, args.buffer,
          partials + l.first_block);
      check(cudaGetLastError(), what("kernel launch", "metrics").c_str());
    }

    // On our stream, after the kernels (and after any step queued before this call).
    partials_host_.resize(blocks);
    check(cudaMemcpyAsync(partials_host_.data(), partials, bytes, cudaMemcpyDeviceToHost,
                          stream_),
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
    // More than kInlineSlots slots: copied to the device. The previous upload may still be
    // reading slot_staging_.
    if (slots_copy_pending_) {
      check(cudaEventSynchronize(slots_copied_), what("cudaEventSynchronize", "slots").c_str());
      slots_copy_pending_ = false;
    }
    if (!slots_copied_) {
      check(cudaEventCreateWithFlags(&slots_copied_, cudaEventDisableTiming), "cudaEventCreate");
    }
    const size_t bytes = size_t(slot_count) * sizeof(Slot);
    slot_staging_.assign(slots, slots + slot_count);
    if (bytes > slots_.capacity()) {
      // Growing frees the old buffer, which queued steps may still read.
      check(cudaStreamSynchronize(stream_), what("cudaStreamSynchronize", "slots").c_str());
    }
    slots_.reserve(bytes, what("cudaMalloc", "slots"));
    check(cudaMemcpyAsync(slots_.get(), slot_staging_.data(), bytes, cudaMemcpyHostToDevice,
                          stream_),
          what("cudaMemcpyAsync", "slots").c_str());
    check(cudaEventRecord(slots_copied_, stream_), what("cudaEventRecord", "slots").c_str());
    slots_copy_pending_ = true;
    args.buffer = static_cast<const Slot*>(slots_.get());
    return args;
  }

  // "cudaMalloc (AdamWLauncher tensor table)"
  static std::string what(const char* call, const char* object) {
    return std::string(call) + " (" + Op::kLauncher + " " + object + ")";
  }

  cudaStream_t stream_ = nullptr;

  // The table of the last set_tensors, on the device. The host copies are the sources of
  // the asynchronous uploads, so they stay untouched until the stream has passed them;
  // work_staging_ also maps metric partials back to tensors.
  DeviceBuffer tensors_, work_;
  std::vector<Tensor> tensor_staging_;
  std::vector<BlockWork> work_staging_;
  std::vector<Launch> launches_;
  int32_t max_slot_ = -1;  // the highest slot a non-empty tensor uses
  bool ready_ = true;      // false after a set_tensors that failed half way

  // More than kInlineSlots slots: copied to the device per launch. slots_copied_ marks the
  // end of the last copy out of slot_staging_.
  DeviceBuffer slots_;
  std::vector<Slot> slot_staging_;
  cudaEvent_t slots_copied_ = nullptr;
  bool slots_copy_pending_ = false;

  // One MetricSums per block of the map, on the device and on the host.
  DeviceBuffer partials_;
  std::vector<MetricSums> partials_host_;
};

}  // namespace fo::cuda::mt
