// The emulator's own tests: it is the safety net of the CUDA backend, so each of its checks
// must be seen to catch what it claims to. Plain C++ against the emulator (no Node): kernels
// written here, run through the same launch path as native/cuda. Death tests run in a forked
// child and look for the emulator's message. Run by tools/cuda-emu/test/run.sh (and CI).
#include <cuda.h>
#include <cuda_runtime.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <cuda_emu/control.h>

#define FO_LAUNCH(kernel, grid, block, shared_bytes, stream) \
  ::cuda_emu::launch(kernel, grid, block, shared_bytes, stream, #kernel, __FILE__, __LINE__)

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}

void ok(cudaError_t e, const char* what) { expect(e == cudaSuccess, std::string(what) + ": " + cudaGetErrorName(e)); }

// Runs f in a child process; passes when the child dies and its stderr contains `needle`.
void expect_death(const std::string& name, const std::string& needle, const std::function<void()>& f) {
  int pipefd[2];
  if (pipe(pipefd) != 0) std::abort();
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], 2);
    close(pipefd[0]);
    f();
    std::_Exit(0);  // survived: the check did not fire
  }
  close(pipefd[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, size_t(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  const bool died = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  expect(died && out.find(needle) != std::string::npos,
         name + ": expected death with \"" + needle + "\", got " + (died ? "death" : "exit 0") + " and: " + out);
}

// ---- kernels

__global__ void __launch_bounds__(256) iota_kernel(int* out, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = i;
}

// Sum of the block's values by a shared-memory tree (as native/cuda reduces).
__global__ void __launch_bounds__(256) block_sum_kernel(const float* in, float* out) {
  __shared__ float part[256];
  const int t = threadIdx.x;
  part[t] = in[blockIdx.x * 256 + t];
  __syncthreads();
  for (int stride = 128; stride > 0; stride >>= 1) {
    if (t < stride) part[t] += part[t + stride];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = part[0];
}

__global__ void __launch_bounds__(256) any_kernel(const int* flags, int* out) {
  const int any = __syncthreads_or(flags[threadIdx.x]);
  const int count = __syncthreads_count(flags[threadIdx.x]);
  if (threadIdx.x == 0) out[0] = any, out[1] = count;
}

__global__ void __launch_bounds__(256) shared_unwritten_kernel(float* out) {
  __shared__ float never_written[4];
  if (threadIdx.x == 0) out[0] = never_written[0];
}

__global__ void __launch_bounds__(256) add_one_kernel(float* p) { p[threadIdx.x] += 1.0f; }

__global__ void __launch_bounds__(64) past_end_kernel(float* p, int n) { p[n + int(threadIdx.x) * 64] = 1.0f; }

__global__ void __launch_bounds__(64) one_past_end_kernel(unsigned char* p, int n) {
  if (threadIdx.x == 0) p[n] = 1;
}

__global__ void __launch_bounds__(64) divergent_barrier_kernel() {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}

__global__ void __launch_bounds__(64) early_return_kernel() {
  if (threadIdx.x == 3) return;
  __syncthreads();
}

float* device_floats(size_t n, float value) {
  void* p = nullptr;
  ok(cudaMalloc(&p, n * 4), "cudaMalloc");
  std::vector<float> host(n, value);
  ok(cudaMemcpy(p, host.data(), n * 4, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  return static_cast<float*>(p);
}

// ---- tests

void test_indices() {
  const int n = 1000;
  void* d = nullptr;
  ok(cudaMalloc(&d, n * sizeof(int)), "cudaMalloc");
  FO_LAUNCH(iota_kernel, (n + 255) / 256, 256, 0, 0)(static_cast<int*>(d), n);
  ok(cudaGetLastError(), "launch");
  std::vector<int> h(n, -1);
  ok(cudaMemcpy(h.data(), d, n * sizeof(int), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
  bool all = true;
  for (int i = 0; i < n; ++i) all &= h[i] == i;
  expect(all, "every thread of every block ran once with its own indices");
  ok(cudaFree(d), "cudaFree");
}

void test_barriers() {
  std::vector<float> in(4 * 256);
  for (size_t i = 0; i < in.size(); ++i) in[i] = float(i % 97);
  float* d_in = device_floats(in.size(), 0);
  ok(cudaMemcpy(d_in, in.data(), in.size() * 4, cudaMemcpyHostToDevice), "copy");
  float* d_out = device_floats(4, 0);
  FO_LAUNCH(block_sum_kernel, 4, 256, 0, 0)(d_in, d_out);
  float out[4];
  ok(cudaMemcpy(out, d_out, sizeof out, cudaMemcpyDeviceToHost), "copy back");
  for (int b = 0; b < 4; ++b) {
    float want = 0;
    for (int t = 0; t < 256; ++t) want += in[b * 256 + t];
    expect(out[b] == want, "block " + std::to_string(b) + " sums to " + std::to_string(want));
  }

  int flags[256] = {};
  flags[77] = 1, flags[200] = 1;
  void* d_flags = nullptr;
  void* d_res = nullptr;
  ok(cudaMalloc(&d_flags, sizeof flags), "malloc");
  ok(cudaMalloc(&d_res, 2 * sizeof(int)), "malloc");
  ok(cudaMemcpy(d_flags, flags, sizeof flags, cudaMemcpyHostToDevice), "copy");
  FO_LAUNCH(any_kernel, 1, 256, 0, 0)(static_cast<const int*>(d_flags), static_cast<int*>(d_res));
  int res[2];
  ok(cudaMemcpy(res, d_res, sizeof res, cudaMemcpyDeviceToHost), "copy back");
  expect(res[0] == 1 && res[1] == 2, "__syncthreads_or and _count see every thread's predicate");

  float* d_one = device_floats(1, 0);
  FO_LAUNCH(shared_unwritten_kernel, 1, 256, 0, 0)(d_one);
  float got = 0;
  ok(cudaMemcpy(&got, d_one, 4, cudaMemcpyDeviceToHost), "copy back");
  expect(std::isnan(got), "shared memory no thread wrote reads as NaN");
}

// Deferred execution and CUDA's stream ordering: a legacy-stream copy waits for a blocking
// stream's kernel, not for a non-blocking stream's; the latter needs an event or a sync.
void test_ordering() {
  const bool deferred = std::getenv("FO_CUDA_EMU") == nullptr || !std::strstr(std::getenv("FO_CUDA_EMU"), "eager");
  float* d = device_floats(256, 1.0f);
  cudaStream_t blocking, nonblocking;
  ok(cudaStreamCreate(&blocking), "stream");
  ok(cudaStreamCreateWithFlags(&nonblocking, cudaStreamNonBlocking), "stream");
  float h = 0;

  FO_LAUNCH(add_one_kernel, 1, 256, 0, blocking)(d);
  expect(cuda_emu::counters().pending_ops == (deferred ? 1u : 0u), "a launch is only queued in deferred mode");
  ok(cudaMemcpy(&h, d, 4, cudaMemcpyDeviceToHost), "copy");
  expect(h == 2.0f, "the legacy stream waits for a blocking stream's earlier kernel");

  FO_LAUNCH(add_one_kernel, 1, 256, 0, nonblocking)(d);
  ok(cudaMemcpy(&h, d, 4, cudaMemcpyDeviceToHost), "copy");
  expect(h == (deferred ? 2.0f : 3.0f), "the legacy stream does not wait for a non-blocking stream");

  cudaEvent_t a, b;
  ok(cudaEventCreate(&a), "event");
  ok(cudaEventCreate(&b), "event");
  ok(cudaEventRecord(a, nonblocking), "record");
  FO_LAUNCH(add_one_kernel, 1, 256, 0, nonblocking)(d);
  ok(cudaEventRecord(b, nonblocking), "record");
  ok(cudaStreamWaitEvent(blocking, b), "wait event");
  ok(cudaMemcpyAsync(&h, d, 4, cudaMemcpyDeviceToHost, blocking), "async copy");
  ok(cudaStreamSynchronize(blocking), "sync");
  expect(h == 4.0f, "cudaStreamWaitEvent orders a stream after another's event");
  float ms = -1;
  ok(cudaEventElapsedTime(&ms, a, b), "elapsed");
  expect(ms >= 0, "cudaEventElapsedTime of two completed events");
  ok(cudaEventDestroy(a), "destroy");
  ok(cudaEventDestroy(b), "destroy");
  ok(cudaStreamDestroy(blocking), "destroy");
  ok(cudaStreamDestroy(nonblocking), "destroy");
  ok(cudaFree(d), "free");
}

void test_errors() {
  float* d = device_floats(16, 0);
  FO_LAUNCH(add_one_kernel, 1, 2048, 0, 0)(d);
  expect(cudaGetLastError() == cudaErrorInvalidConfiguration, "a block of 2048 threads is an invalid configuration");
  expect(cudaGetLastError() == cudaSuccess, "cudaGetLastError resets the error");
  std::vector<float> h(64);
  expect(cudaMemcpy(h.data(), d, 64 * 4, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
         "a copy past the end of an allocation is rejected");
  expect(cudaMemcpy(d, h.data(), 4, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
         "a copy whose kind names the wrong sides is rejected");
  expect(cudaFree(d + 1) == cudaErrorInvalidValue, "cudaFree of a pointer cudaMalloc did not return");
  (void)cudaGetLastError();
  cuda_emu::fail_after("malloc", 1);
  void* p = nullptr;
  ok(cudaMalloc(&p, 4), "the first malloc passes");
  expect(cudaMalloc(&p, 4) == cudaErrorMemoryAllocation, "failAfter(malloc, 1) fails the second malloc");
  ok(cudaMalloc(&p, 4), "then mallocs work again");
  (void)cudaGetLastError();
  void* base = nullptr;
  cudaDriverEntryPointQueryResult status;
  ok(cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", &base, 12000, cudaEnableDefault, &status), "entry");
  auto range = reinterpret_cast<CUresult (*)(CUdeviceptr*, size_t*, CUdeviceptr)>(base);
  CUdeviceptr b = 0;
  size_t size = 0;
  expect(range(&b, &size, CUdeviceptr(d) + 8) == CUDA_SUCCESS && b == CUdeviceptr(d) && size == 64,
         "cuMemGetAddressRange gives an allocation's base and size");
  ok(cudaFree(d), "free");
}

void test_deaths() {
  expect_death("host read of device memory", "host code (not a kernel) read device memory", [] {
    float* d = device_floats(4, 1.0f);
    volatile float x = d[0];
    (void)x;
  });
  expect_death("kernel past the end", "bytes past the end of allocation", [] {
    float* d = device_floats(64, 0);
    FO_LAUNCH(past_end_kernel, 1, 64, 0, 0)(d, 64);
    cudaDeviceSynchronize();
  });
  expect_death("write into the slack after an allocation", "written past the end of allocation", [] {
    void* d = nullptr;
    cudaMalloc(&d, 100);
    FO_LAUNCH(one_past_end_kernel, 1, 64, 0, 0)(static_cast<unsigned char*>(d), 100);
    cudaDeviceSynchronize();
  });
  expect_death("divergent barriers", "threads wait at different barriers", [] {
    FO_LAUNCH(divergent_barrier_kernel, 1, 64, 0, 0)();
    cudaDeviceSynchronize();
  });
  expect_death("early return", "returned while thread", [] {
    FO_LAUNCH(early_return_kernel, 1, 64, 0, 0)();
    cudaDeviceSynchronize();
  });
  expect_death("cudaFree under queued work", "released by cudaFree while work queued before it", [] {
    float* d = device_floats(256, 0);
    cudaStream_t s;
    cudaStreamCreate(&s);
    FO_LAUNCH(add_one_kernel, 1, 256, 0, s)(d);
    cudaFree(d);
    cudaStreamSynchronize(s);
  });
}

}  // namespace

int main() {
  test_indices();
  test_barriers();
  test_ordering();
  test_errors();
  if (!std::getenv("CUDA_EMU_SELFTEST_NO_DEATH")) test_deaths();
  const std::string config = cuda_emu::describe_config();
  if (failures) {
    std::fprintf(stderr, "cuda-emu selftest (%s): %d FAILED\n", config.c_str(), failures);
    return 1;
  }
  std::printf("cuda-emu selftest (%s): all passed\n", config.c_str());
  return 0;
}
