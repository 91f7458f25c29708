// The real CUDA backend's kernels with barriers and shared memory (the norm tree of
// cuda_grad_ops.cu, the pre-step grad pass, the metric reductions and the 8-bit state step of
// multi_tensor.cuh),
// driven without Node, for ThreadSanitizer in the emulator's threads=os mode: every thread of
// a block is a real thread, so a missing __syncthreads is a data race TSan reports. Also
// checks that the results do not depend on how the threads were scheduled (bit-identical
// over repeated runs) and agree with a float64 host sum. Run by tools/cuda-emu/test/run.sh.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../../../native/common/adamw_scalars.h"
#include "../../../native/cuda/cuda_backend.h"

using namespace fo;

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ++failures;
  }
}

void* upload(const std::vector<float>& v) {
  void* d = cuda::device_alloc(v.size() * 4);
  cuda::copy_host_to_device(d, v.data(), v.size() * 4);
  return d;
}

std::vector<float> values(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    v[i] = float(int32_t(seed >> 8) % 2001 - 1000) / 1000.0f;
  }
  return v;
}

}  // namespace

int main() {
  if (!cuda::probe().usable) {
    std::fprintf(stderr, "no CUDA device: %s\n", cuda::probe().error.c_str());
    return 1;
  }
  const std::vector<size_t> sizes = {5, 1000, kChunkElements + 7};
  std::vector<std::vector<float>> host;
  std::vector<void*> grads, params, m, v;
  std::vector<GradRef> refs;
  for (size_t k = 0; k < sizes.size(); ++k) {
    host.push_back(values(sizes[k], uint32_t(k + 1)));
    grads.push_back(upload(host.back()));
    params.push_back(upload(values(sizes[k], uint32_t(k + 11))));
    m.push_back(upload(std::vector<float>(sizes[k], 0.0f)));
    v.push_back(upload(std::vector<float>(sizes[k], 0.0f)));
    refs.push_back(GradRef{grads.back(), int64_t(sizes[k]), DType::Float32});
  }

  // Norm sums: the same bits every time, close to the float64 host sum.
  std::vector<double> a(sizes.size()), b(sizes.size());
  cuda::grad_norm_sums(refs, 2.0, a.data());
  cuda::grad_norm_sums(refs, 2.0, b.data());
  expect(std::memcmp(a.data(), b.data(), a.size() * 8) == 0, "grad_norm_sums is deterministic");
  for (size_t k = 0; k < sizes.size(); ++k) {
    double want = 0;
    for (float x : host[k]) want += double(x) * x;
    expect(std::fabs(a[k] - want) <= 1e-9 * want, "grad_norm_sums agrees with the float64 host sum");
  }

  // The AdamW launcher: the pre-step pass (clip by global norm), a step, and the metrics.
  std::vector<AdamWTensor> tensors;
  for (size_t k = 0; k < sizes.size(); ++k) {
    AdamWTensor t{};
    t.param = params[k];
    t.grad = grads[k];
    t.exp_avg = static_cast<float*>(m[k]);
    t.exp_avg_sq = static_cast<float*>(v[k]);
    t.numel = int64_t(sizes[k]);
    t.slot = 0;
    t.param_dtype = t.grad_dtype = DType::Float32;
    t.rng_stream = uint32_t(k);
    tensors.push_back(t);
  }
  cuda::AdamWLauncher launcher;
  launcher.set_tensors(tensors);
  AdamWSlot slot = make_adamw_slot(AdamWHyper{1e-3, 0.9, 0.999, 1e-8, 0.01, false, false}, 1);
  slot.grad = GradTransform{1.0f, -INFINITY, INFINITY};
  GradPrepass pass;
  pass.check_finite = true;
  pass.clip = ClipMode::GlobalNorm;
  pass.max_norm = 1.0;
  launcher.prepare_grads(pass);
  expect(!launcher.read_found_inf(), "finite grads: found_inf is clear");
  launcher.launch(&slot, 1, true);
  std::vector<MetricSums> first(sizes.size()), second(sizes.size());
  launcher.metrics(&slot, 1, first.data());
  launcher.metrics(&slot, 1, second.data());
  expect(std::memcmp(first.data(), second.data(), first.size() * sizeof(MetricSums)) == 0, "metrics are deterministic");
  for (size_t k = 0; k < sizes.size(); ++k) {
    double want = 0;
    for (float x : host[k]) want += double(x) * x;
    expect(std::fabs(first[k].grad_sq - want) <= 1e-9 * want, "metric grad_sq agrees with the host sum");
  }
  launcher.synchronize();

  // bf16 and 8-bit state (native/cuda/state_access.cuh, step_coded_chunk in multi_tensor.cuh):
  // the 8-bit step combines each quant block's absmax in shared memory between barriers.
  // Two steps of the largest tensor, twice over from the same start: the same bytes.
  for (const StateFormat f : {StateFormat{StateDType::Uint8, 256}, StateFormat{StateDType::Uint8, 2048},
                              StateFormat{StateDType::BFloat16, 256}}) {
    const int64_t n = int64_t(sizes.back());
    const size_t bytes = size_t(state_buffer_bytes(f, n));
    std::vector<uint8_t> out[2];
    for (auto& result : out) {
      void* p = upload(values(size_t(n), 21));
      void* state[2] = {cuda::device_alloc(bytes), cuda::device_alloc(bytes)};
      for (void* s : state) cuda::zero(s, bytes);
      AdamWTensor t = tensors.back();
      t.param = p;
      t.exp_avg = state[0];
      t.exp_avg_sq = state[1];
      t.state = f;
      cuda::AdamWLauncher low_bit;
      low_bit.set_tensors({t});
      low_bit.launch(&slot, 1, false);
      low_bit.launch(&slot, 1, false);
      low_bit.synchronize();
      result.resize(2 * bytes + size_t(n) * 4);
      cuda::copy_device_to_host(result.data(), state[0], bytes);
      cuda::copy_device_to_host(result.data() + bytes, state[1], bytes);
      cuda::copy_device_to_host(result.data() + 2 * bytes, p, size_t(n) * 4);
      for (void* s : state) cuda::device_free(s);
      cuda::device_free(p);
    }
    expect(out[0] == out[1], "bf16 and 8-bit state steps are deterministic");
  }

  for (size_t k = 0; k < sizes.size(); ++k) {
    cuda::device_free(grads[k]);
    cuda::device_free(params[k]);
    cuda::device_free(m[k]);
    cuda::device_free(v[k]);
  }
  if (failures) return 1;
  std::printf("kernels driver: all passed\n");
  return 0;
}
