#include "grad_ops.h"

#include <algorithm>
#include <cmath>

#include "../common/adamw_plan.h"  // kChunkElements
#include "../common/block_reduce.h"
#include "element_io.h"
#include "thread_pool.h"

namespace fo::cpu {

namespace {

// Chunk sums in the CUDA block's order (NOTE(deterministic reductions), block_reduce.h).
template <typename G>
FO_INLINE void partial_loop(const void* grad, int64_t b, int64_t e, float inv_scale, GradPartial* out) {
  *out = reduce_in_block_order<GradPartial>(
      e - b, [&](GradPartial& acc, int64_t i) { acc.add(G::load(grad, b + i) * inv_scale); },
      [](GradPartial& acc, const GradPartial& o) { acc.add(o); });
}

// A max that keeps a NaN once it has seen one, as torch's norm (and the CUDA kernel).
inline double max_keeping_nan(double acc, double x) { return (x > acc || x != x) ? x : acc; }

template <typename G, typename Term>
FO_INLINE double sum_loop(const void* grad, int64_t b, int64_t e, const Term& term) {
  return reduce_in_block_order<double>(
      e - b, [&](double& acc, int64_t i) { acc += term(double(G::load(grad, b + i))); },
      [](double& acc, double o) { acc += o; });
}

template <typename G>
FO_INLINE double norm_loop(const void* grad, int64_t b, int64_t e, double p) {
  if (std::isinf(p)) {
    return reduce_in_block_order<double>(
        e - b, [&](double& acc, int64_t i) { acc = max_keeping_nan(acc, std::fabs(double(G::load(grad, b + i)))); },
        [](double& acc, double o) { acc = max_keeping_nan(acc, o); });
  }
  if (p == 2) return sum_loop<G>(grad, b, e, [](double g) { return g * g; });
  if (p == 1) return sum_loop<G>(grad, b, e, [](double g) { return std::fabs(g); });
  return sum_loop<G>(grad, b, e, [p](double g) { return std::pow(std::fabs(g), p); });
}

template <typename G>
FO_INLINE void scale_loop(void* grad, int64_t b, int64_t e, float coef) {
  for (int64_t i = b; i < e; ++i) G::store(grad, i, G::load(grad, i) * coef);
}

template <typename G>
FO_INLINE void clamp_loop(void* grad, int64_t b, int64_t e, float lo, float hi) {
  for (int64_t i = b; i < e; ++i) {
    const float g = G::load(grad, i);
    G::store(grad, i, g < lo ? lo : (g > hi ? hi : g));
  }
}

FO_SIMD_CLONES void partial_dispatch(const void* grad, DType d, int64_t b, int64_t e, float s, GradPartial* out) {
  if (d == DType::Float32)
    partial_loop<F32>(grad, b, e, s, out);
  else if (d == DType::Float16)
    partial_loop<F16>(grad, b, e, s, out);
  else
    partial_loop<BF16>(grad, b, e, s, out);
}

FO_SIMD_CLONES double norm_dispatch(const void* grad, DType d, int64_t b, int64_t e, double p) {
  if (d == DType::Float32) return norm_loop<F32>(grad, b, e, p);
  if (d == DType::Float16) return norm_loop<F16>(grad, b, e, p);
  return norm_loop<BF16>(grad, b, e, p);
}

FO_SIMD_CLONES void scale_dispatch(void* grad, DType d, int64_t b, int64_t e, float coef) {
  if (d == DType::Float32)
    scale_loop<F32>(grad, b, e, coef);
  else if (d == DType::Float16)
    scale_loop<F16>(grad, b, e, coef);
  else
    scale_loop<BF16>(grad, b, e, coef);
}

FO_SIMD_CLONES void clamp_dispatch(void* grad, DType d, int64_t b, int64_t e, float lo, float hi) {
  if (d == DType::Float32)
    clamp_loop<F32>(grad, b, e, lo, hi);
  else if (d == DType::Float16)
    clamp_loop<F16>(grad, b, e, lo, hi);
  else
    clamp_loop<BF16>(grad, b, e, lo, hi);
}

struct Chunk {
  size_t tensor;
  int64_t begin, end;
};

std::vector<Chunk> chunks_of(const std::vector<GradRef>& grads) {
  std::vector<Chunk> chunks;
  for (size_t t = 0; t < grads.size(); ++t)
    for (int64_t b = 0; b < grads[t].numel; b += kChunkElements)
      chunks.push_back({t, b, std::min(b + kChunkElements, grads[t].numel)});
  return chunks;
}

}  // namespace

void grad_partial(const void* grad, DType dtype, int64_t begin, int64_t end, float inv_scale, GradPartial* out) {
  partial_dispatch(grad, dtype, begin, end, inv_scale, out);
}

void grad_norm_sums(const std::vector<GradRef>& grads, double norm_type, double* out) {
  const std::vector<Chunk> chunks = chunks_of(grads);
  std::vector<double> partial(chunks.size());
  ThreadPool::instance().parallel_for(int64_t(chunks.size()), [&](int64_t c) {
    const Chunk& k = chunks[size_t(c)];
    partial[size_t(c)] = norm_dispatch(grads[k.tensor].data, grads[k.tensor].dtype, k.begin, k.end, norm_type);
  });
  const bool max_norm = std::isinf(norm_type);
  for (size_t t = 0; t < grads.size(); ++t) out[t] = 0;
  for (size_t c = 0; c < chunks.size(); ++c) {
    double& o = out[chunks[c].tensor];
    const double v = partial[c];
    if (max_norm)
      o = max_keeping_nan(o, v);
    else
      o += v;
  }
}

void scale_grads(const std::vector<GradRef>& grads, float coef) {
  const std::vector<Chunk> chunks = chunks_of(grads);
  ThreadPool::instance().parallel_for(int64_t(chunks.size()), [&](int64_t c) {
    const Chunk& k = chunks[size_t(c)];
    scale_dispatch(grads[k.tensor].data, grads[k.tensor].dtype, k.begin, k.end, coef);
  });
}

void clamp_grads(const std::vector<GradRef>& grads, float lo, float hi) {
  const std::vector<Chunk> chunks = chunks_of(grads);
  ThreadPool::instance().parallel_for(int64_t(chunks.size()), [&](int64_t c) {
    const Chunk& k = chunks[size_t(c)];
    clamp_dispatch(grads[k.tensor].data, grads[k.tensor].dtype, k.begin, k.end, lo, hi);
  });
}

}  // namespace fo::cpu
