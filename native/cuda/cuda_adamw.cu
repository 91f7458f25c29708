// The fused multi-tensor AdamW step (after PyTorch's MultiTensorApply.cuh and llm.c's
// adamw.cuh). Unlike PyTorch, the table of tensors lives in device memory and is uploaded
// only when the optimizer's tensors change, so a step costs one launch per dtype combination
// plus, for many hyperparameter slots, one small copy.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "element_access.cuh"

namespace fo::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kVec = 4;  // elements per thread per iteration on the aligned path
constexpr int kInlineSlots = 64;

// The common case: the step's slots travel in the kernel's parameter block, so a step needs
// no copy at all; every block reads its slot as a broadcast from the constant bank.
struct SlotTable {
  AdamWSlot s[kInlineSlots];
};
// Kernel parameters are limited to 4 KiB on every driver we support.
static_assert(sizeof(SlotTable) + 3 * sizeof(void*) <= 4096, "kernel parameters too large");

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
constexpr Combo kCombos[] = {
    {DType::Float32, DType::Float32},   {DType::Float16, DType::Float32},
    {DType::Float16, DType::Float16},   {DType::BFloat16, DType::Float32},
    {DType::BFloat16, DType::BFloat16},
};
constexpr int kComboCount = sizeof(kCombos) / sizeof(kCombos[0]);

int combo_index(DType param, DType grad) {
  for (int i = 0; i < kComboCount; ++i) {
    if (kCombos[i].param == param && kCombos[i].grad == grad) return i;
  }
  return -1;
}

// The arrays of one chunk, already offset to the chunk's first element.
template <DType P, DType G>
struct Chunk {
  storage_t<P>* param;
  float* master;  // the fp32 value of a half param; null for fp32 params (and half without one)
  const storage_t<G>* grad;
  float* exp_avg;
  float* exp_avg_sq;
  float* max_exp_avg_sq;  // null unless this step's slot asks for amsgrad
};

// Vector accesses need every array aligned to kVec of its elements. A chunk starts a multiple
// of kChunkElements elements into its tensor, so it is aligned exactly when its tensor is.
template <typename T>
__device__ __forceinline__ bool vec_aligned(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % (kVec * sizeof(T)) == 0;  // null counts as aligned
}

// Updates elements [i, i + N) of the chunk.
template <int N, DType P, DType G>
__device__ __forceinline__ void update(const Chunk<P, G>& c, int i, const AdamWSlot& s) {
  // Every load is issued before the math, so the N-wide path keeps 4-6 vector loads in
  // flight per thread: the kernel is bound by memory latency, not arithmetic.
  float w[N], g[N], m[N], v[N], vmax[N] = {};
  if constexpr (P != DType::Float32) {
    if (c.master) load<DType::Float32, N>(c.master + i, w);
    else load<P, N>(c.param + i, w);
  } else {
    load<P, N>(c.param + i, w);
  }
  load<G, N>(c.grad + i, g);
  load<DType::Float32, N>(c.exp_avg + i, m);
  load<DType::Float32, N>(c.exp_avg_sq + i, v);
  if (c.max_exp_avg_sq) load<DType::Float32, N>(c.max_exp_avg_sq + i, vmax);

#pragma unroll
  for (int k = 0; k < N; ++k) w[k] = adamw_update(w[k], g[k], m[k], v[k], vmax[k], s);

  // A half param is refreshed from its master in the same pass, so p.data never lags.
  if constexpr (P != DType::Float32) {
    if (c.master) store<DType::Float32, N>(c.master + i, w);
  }
  store<P, N>(c.param + i, w);
  store<DType::Float32, N>(c.exp_avg + i, m);
  store<DType::Float32, N>(c.exp_avg_sq + i, v);
  if (c.max_exp_avg_sq) store<DType::Float32, N>(c.max_exp_avg_sq + i, vmax);
}

// One block per chunk of one tensor; all tensors of this dtype pair in a single launch.
template <DType P, DType G>
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(const AdamWTensor* __restrict__ tensors, const BlockWork* __restrict__ work,
                 SlotTable inline_slots, const AdamWSlot* __restrict__ slot_buffer) {
  const BlockWork item = work[blockIdx.x];
  const AdamWTensor t = tensors[item.tensor];
  const AdamWSlot s = slot_buffer ? slot_buffer[t.slot] : inline_slots.s[t.slot];

  const int64_t begin = int64_t(item.chunk) * kChunkElements;
  const int n = int(t.numel - begin < kChunkElements ? t.numel - begin : kChunkElements);

  Chunk<P, G> c;
  c.param = static_cast<storage_t<P>*>(t.param) + begin;
  c.master = (P != DType::Float32 && t.master) ? t.master + begin : nullptr;
  c.grad = static_cast<const storage_t<G>*>(t.grad) + begin;
  c.exp_avg = t.exp_avg + begin;
  c.exp_avg_sq = t.exp_avg_sq + begin;
  // max_exp_avg_sq may be left over from an earlier amsgrad setting: only the slot decides.
  c.max_exp_avg_sq = (s.flags & kAdamWAmsgrad) ? t.max_exp_avg_sq + begin : nullptr;

  // Uniform across the block, so the branch costs no divergence.
  const bool aligned = vec_aligned(c.param) && vec_aligned(c.master) && vec_aligned(c.grad) &&
                       vec_aligned(c.exp_avg) && vec_aligned(c.exp_avg_sq) &&
                       vec_aligned(c.max_exp_avg_sq);
  int tail_begin = 0;
  if (aligned) {
    tail_begin = n - n % kVec;
    for (int i = threadIdx.x * kVec; i < tail_begin; i += kThreads * kVec) {
      update<kVec>(c, i, s);
    }
  }
  // Misaligned tensors, and the last n % kVec elements of an aligned one.
  for (int i = tail_begin + threadIdx.x; i < n; i += kThreads) update<1>(c, i, s);
}

using KernelFn = void (*)(const AdamWTensor*, const BlockWork*, SlotTable, const AdamWSlot*);
constexpr KernelFn kKernels[kComboCount] = {
    adamw_kernel<DType::Float32, DType::Float32>,   adamw_kernel<DType::Float16, DType::Float32>,
    adamw_kernel<DType::Float16, DType::Float16>,   adamw_kernel<DType::BFloat16, DType::Float32>,
    adamw_kernel<DType::BFloat16, DType::BFloat16>,
};

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
  void reserve(size_t bytes, const char* what) {
    if (bytes <= capacity_) return;
    void* fresh = nullptr;
    check(cudaMalloc(&fresh, bytes), what);
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

}  // namespace

struct AdamWLauncher::Impl {
  cudaStream_t stream = nullptr;

  // The table of the last set_tensors, on the device. The host copies are the sources of
  // the asynchronous uploads, so they stay untouched until the stream has passed them.
  DeviceBuffer tensors, work;
  std::vector<AdamWTensor> tensor_staging;
  std::vector<BlockWork> work_staging;
  std::vector<Launch> launches;
  bool ready = true;  // false after a set_tensors that failed half way

  // What launch() checks against the step's slots without touching the tensors.
  int32_t max_slot = -1;
  std::vector<uint8_t> slot_lacks_max;  // [slot]: one of its tensors has no max_exp_avg_sq

  // More than kInlineSlots slots: copied to the device each step. slots_copied marks the
  // end of the last copy out of slot_staging.
  DeviceBuffer slots;
  std::vector<AdamWSlot> slot_staging;
  cudaEvent_t slots_copied = nullptr;
  bool slots_copy_pending = false;

  ~Impl() {
    // Queued steps read our buffers: let them finish before the members free them. Errors
    // are ignored: a destructor must not throw, and in process teardown the runtime may
    // already be gone.
    if (stream) {
      (void)cudaStreamSynchronize(stream);
      (void)cudaStreamDestroy(stream);
    }
    if (slots_copied) (void)cudaEventDestroy(slots_copied);
    (void)cudaGetLastError();
  }
};

AdamWLauncher::AdamWLauncher() : impl_(std::make_unique<Impl>()) {
  // A blocking stream (not cudaStreamNonBlocking): the synchronous cudaMemcpy of tensor
  // reads and writes on the legacy default stream then orders with our kernels.
  check(cudaStreamCreate(&impl_->stream), "cudaStreamCreate");
}

AdamWLauncher::~AdamWLauncher() = default;

void AdamWLauncher::set_tensors(const std::vector<AdamWTensor>& tensors) {
  Impl& im = *impl_;
  if (tensors.size() > size_t(std::numeric_limits<int32_t>::max())) {
    throw std::runtime_error("AdamWLauncher::set_tensors: too many tensors");
  }

  // Build and check everything first: a rejected table leaves the previous one in use.
  std::vector<int> combo_of(tensors.size());
  int32_t max_slot = -1;
  std::vector<uint8_t> slot_lacks_max;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const AdamWTensor& t = tensors[i];
    const std::string where = "AdamWLauncher::set_tensors: tensor " + std::to_string(i);
    combo_of[i] = combo_index(t.param_dtype, t.grad_dtype);
    if (combo_of[i] < 0) {
      throw std::runtime_error(where + ": unsupported dtypes (param " +
                               dtype_name(t.param_dtype) + ", grad " +
                               dtype_name(t.grad_dtype) + ")");
    }
    if (t.numel < 0) throw std::runtime_error(where + ": negative numel");
    if (t.numel == 0) continue;
    if (!t.param || !t.grad || !t.exp_avg || !t.exp_avg_sq) {
      throw std::runtime_error(where + ": null param, grad or moment pointer");
    }
    if (t.slot < 0) throw std::runtime_error(where + ": negative slot");
    if ((t.numel - 1) / kChunkElements >= std::numeric_limits<int32_t>::max()) {
      throw std::runtime_error(where + ": too many elements");
    }
    max_slot = std::max(max_slot, t.slot);
    if (slot_lacks_max.size() <= size_t(t.slot)) slot_lacks_max.resize(size_t(t.slot) + 1, 0);
    if (!t.max_exp_avg_sq) slot_lacks_max[size_t(t.slot)] = 1;
  }

  // Blocks grouped by dtype pair, each group one launch; within a group tensor order, so
  // neighbouring blocks stream neighbouring memory.
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
      throw std::runtime_error("AdamWLauncher::set_tensors: too many elements in all");
    }
    if (work.size() > first) {
      launches.push_back({combo, int32_t(first), int32_t(work.size() - first)});
    }
  }

  // Queued steps still read the old table, and its uploads may still read the staging
  // vectors: wait for them. Tensors change rarely, so this wait is off the step's path.
  im.ready = false;
  check(cudaStreamSynchronize(im.stream), "AdamWLauncher::set_tensors (cudaStreamSynchronize)");
  im.launches.clear();
  im.tensor_staging = tensors;
  im.work_staging = std::move(work);
  const size_t tensor_bytes = im.tensor_staging.size() * sizeof(AdamWTensor);
  const size_t work_bytes = im.work_staging.size() * sizeof(BlockWork);
  if (tensor_bytes > 0) {
    im.tensors.reserve(tensor_bytes, "cudaMalloc (AdamW tensor table)");
    check(cudaMemcpyAsync(im.tensors.get(), im.tensor_staging.data(), tensor_bytes,
                          cudaMemcpyHostToDevice, im.stream),
          "cudaMemcpyAsync (AdamW tensor table)");
  }
  if (work_bytes > 0) {
    im.work.reserve(work_bytes, "cudaMalloc (AdamW block table)");
    check(cudaMemcpyAsync(im.work.get(), im.work_staging.data(), work_bytes,
                          cudaMemcpyHostToDevice, im.stream),
          "cudaMemcpyAsync (AdamW block table)");
  }
  im.launches = std::move(launches);
  im.max_slot = max_slot;
  im.slot_lacks_max = std::move(slot_lacks_max);
  im.ready = true;
}

void AdamWLauncher::launch(const AdamWSlot* slots, int slot_count) {
  Impl& im = *impl_;
  if (!im.ready) {
    throw std::runtime_error("AdamWLauncher::launch: the last set_tensors failed");
  }
  if (im.launches.empty()) return;
  if (slot_count < 0 || (slot_count > 0 && slots == nullptr)) {
    throw std::runtime_error("AdamWLauncher::launch: invalid slot table");
  }
  if (im.max_slot >= slot_count) {
    throw std::runtime_error("AdamWLauncher::launch: a tensor uses slot " +
                             std::to_string(im.max_slot) + " but only " +
                             std::to_string(slot_count) + " slots were given");
  }
  for (size_t s = 0; s < im.slot_lacks_max.size(); ++s) {
    if ((slots[s].flags & kAdamWAmsgrad) && im.slot_lacks_max[s]) {
      throw std::runtime_error("AdamWLauncher::launch: slot " + std::to_string(s) +
                               " uses amsgrad but one of its tensors has no max_exp_avg_sq");
    }
  }

  SlotTable inline_slots{};
  const AdamWSlot* slot_buffer = nullptr;
  if (slot_count <= kInlineSlots) {
    std::memcpy(inline_slots.s, slots, size_t(slot_count) * sizeof(AdamWSlot));
  } else {
    // The previous step's upload may still be reading slot_staging.
    if (im.slots_copy_pending) {
      check(cudaEventSynchronize(im.slots_copied), "cudaEventSynchronize (AdamW slots)");
      im.slots_copy_pending = false;
    }
    if (!im.slots_copied) {
      check(cudaEventCreateWithFlags(&im.slots_copied, cudaEventDisableTiming),
            "cudaEventCreate");
    }
    const size_t bytes = size_t(slot_count) * sizeof(AdamWSlot);
    im.slot_staging.assign(slots, slots + slot_count);
    if (bytes > im.slots.capacity()) {
      // Growing frees the old buffer, which queued steps may still read.
      check(cudaStreamSynchronize(im.stream), "cudaStreamSynchronize (AdamW slots)");
    }
    im.slots.reserve(bytes, "cudaMalloc (AdamW slots)");
    check(cudaMemcpyAsync(im.slots.get(), im.slot_staging.data(), bytes, cudaMemcpyHostToDevice,
                          im.stream),
          "cudaMemcpyAsync (AdamW slots)");
    check(cudaEventRecord(im.slots_copied, im.stream), "cudaEventRecord (AdamW slots)");
    im.slots_copy_pending = true;
    slot_buffer = static_cast<const AdamWSlot*>(im.slots.get());
  }

  const auto* table = static_cast<const AdamWTensor*>(im.tensors.get());
  const auto* work = static_cast<const BlockWork*>(im.work.get());
  (void)cudaGetLastError();  // a stale error from elsewhere must not be blamed on our launch
  for (const Launch& l : im.launches) {
    kKernels[l.combo]<<<unsigned(l.blocks), kThreads, 0, im.stream>>>(
        table, work + l.first_block, inline_slots, slot_buffer);
    check(cudaGetLastError(), "AdamW kernel launch");
  }
}

void AdamWLauncher::synchronize() {
  check(cudaStreamSynchronize(impl_->stream), "AdamW step (cudaStreamSynchronize)");
}

}  // namespace fo::cuda
