// Standalone grad operations over any list of grads (clipGradNorm / clipGradValue): the
// per-tensor norm sums, scaling and clamping. These are occasional utilities, not the
// optimizer's step path: every call uploads a small table of its tensors, covers all of them
// (fp32, fp16 and bf16 mixed) with one launch on the legacy default stream, and waits.
//
// Work is cut as the optimizers cut it: one block of mt::kThreads threads per chunk of
// kChunkElements elements of one tensor. A block finds its tensor by a binary search over
// the table's first blocks, so the upload is one entry per tensor, not one per block.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "element_access.cuh"
#include "multi_tensor.cuh"

namespace fo::cuda {
namespace {

using mt::kThreads;
using mt::kVec;

// One non-empty grad of the call; entries are in call order, first_block increasing.
struct GradEntry {
  void* data;
  int64_t numel;
  int32_t dtype;        // DType
  int32_t first_block;  // its chunk c is block first_block + c
};

// The chunk of one block: its tensor's elements [begin, begin + n).
struct BlockChunk {
  void* data;
  DType dtype;
  int64_t begin;
  int n;
};

__device__ __forceinline__ BlockChunk block_chunk(const GradEntry* __restrict__ entries, int count) {
  // The last entry whose first block is <= this block (entries[0].first_block == 0).
  const int block = int(blockIdx.x);
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    if (entries[mid].first_block <= block)
      lo = mid;
    else
      hi = mid - 1;
  }
  const GradEntry e = entries[lo];
  BlockChunk c;
  c.data = e.data;
  c.dtype = DType(e.dtype);
  c.begin = int64_t(block - e.first_block) * kChunkElements;
  const int64_t left = e.numel - c.begin;
  c.n = int(left < kChunkElements ? left : kChunkElements);
  return c;
}

// ---------------------------------------------------------------------------------------
// Norm sums

enum class NormKind { L2, L1, Inf, Pow };

// One element's contribution, in float64.
template <NormKind K>
__device__ __forceinline__ double norm_term(float g, double p) {
  const double d = g;
  if constexpr (K == NormKind::L2)
    return d * d;
  else if constexpr (K == NormKind::Pow)
    return pow(fabs(d), p);
  else
    return fabs(d);  // L1, Inf
}

// Sum, or for Inf a max that keeps a NaN once it has seen one (fmax would drop it).
template <NormKind K>
__device__ __host__ __forceinline__ double norm_combine(double acc, double x) {
  if constexpr (K == NormKind::Inf)
    return (x != x || x > acc) ? x : acc;
  else
    return acc + x;
}

// This thread's part of a chunk: the groups of kVec elements starting at
// kVec * (threadIdx.x + k * kThreads), each added in index order, by vector loads when the
// chunk is aligned and one by one when not, so the result depends on the values only.
template <NormKind K, DType D>
__device__ __forceinline__ double thread_norm(const void* data, int64_t begin, int n, double p) {
  const storage_t<D>* g = static_cast<const storage_t<D>*>(data) + begin;
  const bool aligned = mt::vec_aligned(g);
  const int full_end = n - n % kVec;
  double acc = 0;
  for (int i = threadIdx.x * kVec; i < n; i += kThreads * kVec) {
    if (aligned && i < full_end) {
      float v[kVec];
      load<D, kVec>(g + i, v);
#pragma unroll
      for (int k = 0; k < kVec; ++k) acc = norm_combine<K>(acc, norm_term<K>(v[k], p));
    } else {
      for (int k = i; k < i + kVec && k < n; ++k) {
        float v[1];
        load<D, 1>(g + k, v);
        acc = norm_combine<K>(acc, norm_term<K>(v[0], p));
      }
    }
  }
  return acc;
}

// partials[blockIdx.x] = the norm sum (or max) of the block's chunk, reduced over the block
// by a fixed shared-memory tree (no atomics).
template <NormKind K>
__global__ void __launch_bounds__(kThreads)
    norm_kernel(const GradEntry* __restrict__ entries, int count, double p, double* __restrict__ partials) {
  const BlockChunk c = block_chunk(entries, count);
  double acc;
  switch (c.dtype) {
    case DType::Float16:
      acc = thread_norm<K, DType::Float16>(c.data, c.begin, c.n, p);
      break;
    case DType::BFloat16:
      acc = thread_norm<K, DType::BFloat16>(c.data, c.begin, c.n, p);
      break;
    default:
      acc = thread_norm<K, DType::Float32>(c.data, c.begin, c.n, p);
      break;
  }

  __shared__ double part[kThreads];
  const int t = threadIdx.x;
  part[t] = acc;
  __syncthreads();
#pragma unroll
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (t < stride) part[t] = norm_combine<K>(part[t], part[t + stride]);
    __syncthreads();
  }
  if (t == 0) partials[blockIdx.x] = part[0];
}

// ---------------------------------------------------------------------------------------
// Element-wise maps (scale, clamp): computed in fp32, rounded to the grad's dtype.

struct ScaleOp {
  float coef;
  __device__ __forceinline__ float operator()(float g) const { return g * coef; }
};

struct ClampOp {
  float lo, hi;
  // Comparisons rather than fminf/fmaxf, which would turn a NaN grad into a bound.
  __device__ __forceinline__ float operator()(float g) const { return g < lo ? lo : (g > hi ? hi : g); }
};

template <DType D, class F>
__device__ __forceinline__ void map_chunk(void* data, int64_t begin, int n, const F& f) {
  storage_t<D>* g = static_cast<storage_t<D>*>(data) + begin;
  int tail_begin = 0;
  if (mt::vec_aligned(g)) {
    tail_begin = n - n % kVec;
    for (int i = threadIdx.x * kVec; i < tail_begin; i += kThreads * kVec) {
      float v[kVec];
      load<D, kVec>(g + i, v);
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[k] = f(v[k]);
      store<D, kVec>(g + i, v);
    }
  }
  for (int i = tail_begin + threadIdx.x; i < n; i += kThreads) {
    float v[1];
    load<D, 1>(g + i, v);
    v[0] = f(v[0]);
    store<D, 1>(g + i, v);
  }
}

template <class F>
__global__ void __launch_bounds__(kThreads) map_kernel(const GradEntry* __restrict__ entries, int count, F f) {
  const BlockChunk c = block_chunk(entries, count);
  switch (c.dtype) {
    case DType::Float16:
      map_chunk<DType::Float16>(c.data, c.begin, c.n, f);
      break;
    case DType::BFloat16:
      map_chunk<DType::BFloat16>(c.data, c.begin, c.n, f);
      break;
    default:
      map_chunk<DType::Float32>(c.data, c.begin, c.n, f);
      break;
  }
}

// ---------------------------------------------------------------------------------------
// Host side

// The call's non-empty grads as uploaded, with where each came from.
struct Table {
  std::vector<GradEntry> entries;
  std::vector<size_t> source;  // entries[e] is grads[source[e]]
  int32_t blocks = 0;
};

Table build_table(const std::vector<GradRef>& grads, const char* fn) {
  Table table;
  int64_t blocks = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    const GradRef& g = grads[i];
    const std::string where = std::string(fn) + ": grad " + std::to_string(i);
    const int32_t dtype = static_cast<int32_t>(g.dtype);
    DType checked;
    if (!dtype_from_int(dtype, &checked)) {
      throw std::runtime_error(where + ": unknown dtype " + std::to_string(dtype));
    }
    if (g.numel < 0) throw std::runtime_error(where + ": negative numel");
    if (g.numel == 0) continue;
    if (g.data == nullptr) throw std::runtime_error(where + ": null data pointer");
    const int64_t chunks = (g.numel + kChunkElements - 1) / kChunkElements;
    if (blocks + chunks > int64_t(std::numeric_limits<int32_t>::max())) {
      throw std::runtime_error(std::string(fn) + ": too many elements in all");
    }
    table.entries.push_back({g.data, g.numel, dtype, int32_t(blocks)});
    table.source.push_back(i);
    blocks += chunks;
  }
  table.blocks = int32_t(blocks);
  return table;
}

// Device memory for one call: the table, then `extra_bytes` (8-byte aligned) of output.
struct CallBuffers {
  mt::DeviceBuffer memory;
  const GradEntry* entries = nullptr;
  void* extra = nullptr;

  CallBuffers(const Table& table, size_t extra_bytes, const char* fn) {
    static_assert(sizeof(GradEntry) % alignof(double) == 0, "output offset alignment");
    const size_t table_bytes = table.entries.size() * sizeof(GradEntry);
    memory.reserve(table_bytes + extra_bytes, std::string("cudaMalloc (") + fn + ")");
    char* base = static_cast<char*>(memory.get());
    // Synchronous on the legacy default stream, so it also waits for earlier work of every
    // blocking stream (queued optimizer steps that may still write these grads).
    check(cudaMemcpy(base, table.entries.data(), table_bytes, cudaMemcpyHostToDevice),
          (std::string("cudaMemcpy (") + fn + " table)").c_str());
    entries = reinterpret_cast<const GradEntry*>(base);
    extra = base + table_bytes;
  }
};

template <NormKind K>
void launch_norm(const Table& table, const CallBuffers& buf, double p) {
  FO_LAUNCH(norm_kernel<K>, unsigned(table.blocks), kThreads, 0, 0)
  (buf.entries, int(table.entries.size()), p, static_cast<double*>(buf.extra));
}

template <class F>
void run_map(const std::vector<GradRef>& grads, const F& f, const char* fn) {
  const Table table = build_table(grads, fn);
  if (table.blocks == 0) return;
  if (table.entries.size() > size_t(std::numeric_limits<int>::max())) {
    throw std::runtime_error(std::string(fn) + ": too many grads");
  }
  CallBuffers buf(table, 0, fn);
  (void)cudaGetLastError();  // a stale error from elsewhere must not be blamed on our launch
  FO_LAUNCH(map_kernel<F>, unsigned(table.blocks), kThreads, 0, 0)(buf.entries, int(table.entries.size()), f);
  check(cudaGetLastError(), (std::string(fn) + " launch").c_str());
  check(cudaStreamSynchronize(0), (std::string(fn) + " (cudaStreamSynchronize)").c_str());
}

}  // namespace

void grad_norm_sums(const std::vector<GradRef>& grads, double norm_type, double* out) {
  const char* fn = "grad_norm_sums";
  if (std::isnan(norm_type)) throw std::runtime_error("grad_norm_sums: norm type is NaN");
  if (!grads.empty() && out == nullptr) throw std::runtime_error("grad_norm_sums: null output");
  const Table table = build_table(grads, fn);
  for (size_t i = 0; i < grads.size(); ++i) out[i] = 0.0;  // empty grads: 0 (also for max)
  if (table.blocks == 0) return;
  if (table.entries.size() > size_t(std::numeric_limits<int>::max())) {
    throw std::runtime_error("grad_norm_sums: too many grads");
  }

  const size_t partial_bytes = size_t(table.blocks) * sizeof(double);
  CallBuffers buf(table, partial_bytes, fn);
  NormKind kind;
  if (norm_type == 2.0)
    kind = NormKind::L2;
  else if (norm_type == 1.0)
    kind = NormKind::L1;
  else if (std::isinf(norm_type))
    kind = NormKind::Inf;
  else
    kind = NormKind::Pow;

  (void)cudaGetLastError();  // a stale error from elsewhere must not be blamed on our launch
  switch (kind) {
    case NormKind::L2:
      launch_norm<NormKind::L2>(table, buf, norm_type);
      break;
    case NormKind::L1:
      launch_norm<NormKind::L1>(table, buf, norm_type);
      break;
    case NormKind::Inf:
      launch_norm<NormKind::Inf>(table, buf, norm_type);
      break;
    case NormKind::Pow:
      launch_norm<NormKind::Pow>(table, buf, norm_type);
      break;
  }
  check(cudaGetLastError(), "grad_norm_sums launch");

  // cudaMemcpy on the legacy default stream waits for the kernel.
  std::vector<double> partials(size_t(table.blocks));
  check(cudaMemcpy(partials.data(), buf.extra, partial_bytes, cudaMemcpyDeviceToHost),
        "cudaMemcpy (grad_norm_sums partials)");

  // A tensor's blocks are consecutive, chunk 0 first: each sum starts from 0 and adds its
  // chunk partials in chunk order (the max for an infinite norm type).
  for (size_t e = 0; e < table.entries.size(); ++e) {
    const GradEntry& entry = table.entries[e];
    const int64_t chunks = (entry.numel + kChunkElements - 1) / kChunkElements;
    double acc = 0.0;
    for (int64_t c = 0; c < chunks; ++c) {
      const double x = partials[size_t(entry.first_block + c)];
      acc = kind == NormKind::Inf ? norm_combine<NormKind::Inf>(acc, x) : acc + x;
    }
    out[table.source[e]] = acc;
  }
}

void scale_grads(const std::vector<GradRef>& grads, float coef) { run_map(grads, ScaleOp{coef}, "scale_grads"); }

void clamp_grads(const std::vector<GradRef>& grads, float lo, float hi) {
  run_map(grads, ClampOp{lo, hi}, "clamp_grads");
}

}  // namespace fo::cuda
