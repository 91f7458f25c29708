// Runs a kernel: its blocks one after another (in the configured block order), each block's
// threads either as fibers on the calling thread (ucontext: fast, deterministic, in the
// configured thread order) or as real threads meeting at a real barrier (so ThreadSanitizer
// can see races on shared memory). A barrier is complete when every thread of the block
// waits at the same __syncthreads; a thread that returns while others wait, or threads
// waiting at different barriers, is an error, as is reading shared memory that no thread of
// the block wrote (it is poisoned before every block).
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "emu.h"

#if defined(__SANITIZE_ADDRESS__)
extern "C" {
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, size_t* size_old);
void __asan_unpoison_memory_region(const volatile void* addr, size_t size);
}
#endif

// Bounds of the section holding every __shared__ variable (language.h). Weak: a program
// without shared memory has no such section.
extern "C" char __start_cuda_emu_shared[] __attribute__((weak));
extern "C" char __stop_cuda_emu_shared[] __attribute__((weak));

namespace cuda_emu {
namespace {

thread_local const ThreadCoords* tl_coords = nullptr;
thread_local const KernelRun* tl_run = nullptr;

enum class BarrierOp { Or = 0, And = 1, Count = 2 };

int reduce(BarrierOp op, int acc, int pred, bool first) {
  const int p = pred != 0;
  if (first) return op == BarrierOp::Count ? p : p;
  switch (op) {
    case BarrierOp::Or:
      return acc | p;
    case BarrierOp::And:
      return acc & p;
    default:
      return acc + p;
  }
}

std::string thread_text(const ThreadCoords& c) {
  return "(" + std::to_string(c.thread_idx.x) + "," + std::to_string(c.thread_idx.y) + "," +
         std::to_string(c.thread_idx.z) + ")";
}
std::string block_text(const ThreadCoords& c) {
  return "(" + std::to_string(c.block_idx.x) + "," + std::to_string(c.block_idx.y) + "," +
         std::to_string(c.block_idx.z) + ")";
}
// "native/cuda/multi_tensor.cuh" for ".../tools/cuda-emu/units/../../../native/cuda/multi_tensor.cuh".
const char* short_path(const char* file) {
  const char* best = file;
  for (const char* p = file; (p = std::strstr(p, "native/")) != nullptr; ++p) best = p;
  return best;
}

std::string kernel_text(const KernelRun& r) {
  return std::string("kernel `") + r.site.kernel + "` launched at " + short_path(r.site.file) + ":" +
         std::to_string(r.site.line);
}

__attribute__((no_sanitize_address)) void poison_shared_memory() {
  if (!__start_cuda_emu_shared || !__stop_cuda_emu_shared) return;
  for (volatile char* p = __start_cuda_emu_shared; p < __stop_cuda_emu_shared; ++p) *p = char(0xff);
}

std::vector<uint32_t> make_order(uint32_t n, Order order, std::mt19937_64& rng) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), 0u);
  if (order == Order::Reverse) std::reverse(v.begin(), v.end());
  if (order == Order::Random) std::shuffle(v.begin(), v.end(), rng);
  return v;
}

ThreadCoords coords_of(const KernelRun& r, uint32_t block_linear, uint32_t thread_linear) {
  ThreadCoords c;
  c.block_dim = r.block;
  c.grid_dim = r.grid;
  c.block_idx =
      uint3{block_linear % r.grid.x, (block_linear / r.grid.x) % r.grid.y, block_linear / (r.grid.x * r.grid.y)};
  c.thread_idx = uint3{thread_linear % r.block.x, (thread_linear / r.block.x) % r.block.y,
                       thread_linear / (r.block.x * r.block.y)};
  return c;
}

// ---------------------------------------------------------------------------------------
// Fiber mode
//
// A fiber switch saves the callee-saved registers on the current stack and swaps stack
// pointers (fiber_switch below, x86-64): about 10 ns, where swapcontext makes a system call
// to save the signal mask. Other architectures use ucontext for every switch.

#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kStackBytes = size_t(1) << 20;
#else
constexpr size_t kStackBytes = size_t(256) << 10;
#endif

extern "C" __attribute__((visibility("hidden"))) void cuda_emu_fiber_main();
#if defined(__x86_64__)
#define FO_EMU_ASM_SWITCH 1
extern "C" void cuda_emu_fiber_switch(void** save_sp, void* next_sp);
extern "C" void cuda_emu_fiber_trampoline();
asm(R"(
  .text
  .p2align 4
  .globl cuda_emu_fiber_switch
  .hidden cuda_emu_fiber_switch
  .type cuda_emu_fiber_switch,@function
cuda_emu_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cuda_emu_fiber_switch, .-cuda_emu_fiber_switch

  .p2align 4
  .globl cuda_emu_fiber_trampoline
  .hidden cuda_emu_fiber_trampoline
  .type cuda_emu_fiber_trampoline,@function
cuda_emu_fiber_trampoline:
  call cuda_emu_fiber_main
  ud2
  .size cuda_emu_fiber_trampoline, .-cuda_emu_fiber_trampoline
)");
#endif

struct Fiber {
  enum State { Ready, AtBarrier, Done };
#if FO_EMU_ASM_SWITCH
  void* sp = nullptr;  // saved stack pointer while switched out
#else
  ucontext_t context;
#endif
  char* stack = nullptr;  // kStackBytes, above a PROT_NONE guard page
  State state = Ready;
  ThreadCoords coords;
  const char* site = nullptr;  // the barrier it waits at
  int predicate = 0;
  BarrierOp op = BarrierOp::Or;
  int result = 0;
  void* fake_stack = nullptr;
};

struct FiberBlock {
  std::vector<std::unique_ptr<Fiber>> fibers;  // unique_ptr: a saved context must not move
#if FO_EMU_ASM_SWITCH
  void* scheduler_sp = nullptr;
#else
  ucontext_t scheduler;
#endif
  const void* scheduler_stack = nullptr;
  size_t scheduler_stack_size = 0;
  Fiber* current = nullptr;
  const KernelCall* call = nullptr;
};

thread_local FiberBlock* tl_block = nullptr;

FiberBlock& fiber_pool(uint32_t threads) {
  static FiberBlock* pool = new FiberBlock;  // used under the device lock only
  while (pool->fibers.size() < threads) {
    auto f = std::make_unique<Fiber>();
    char* mem = static_cast<char*>(
        mmap(nullptr, kStackBytes + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    if (mem == MAP_FAILED) fatal("cannot allocate fiber stacks");
    mprotect(mem, 4096, PROT_NONE);  // a stack overflow faults instead of corrupting memory
    f->stack = mem + 4096;
#if !FO_EMU_ASM_SWITCH
    if (getcontext(&f->context) != 0) fatal("getcontext failed");
#endif
    pool->fibers.push_back(std::move(f));
  }
  return *pool;
}

// A fresh start for fiber f: its first switch enters cuda_emu_fiber_main on its own stack.
void prepare_fiber(Fiber& f) {
#if defined(__SANITIZE_ADDRESS__)
  // The frames under the entry point never return normally; clear their redzones.
  __asan_unpoison_memory_region(f.stack + kStackBytes - 16384, 16384);
#endif
#if FO_EMU_ASM_SWITCH
  // The frame cuda_emu_fiber_switch pops: mxcsr and x87 control word, six registers, and the
  // return address (the trampoline), placed so the trampoline's call sees an aligned stack.
  uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack) + kStackBytes) & ~uintptr_t(15);
  auto* slot = reinterpret_cast<uint64_t*>(top - 8);
  *slot = reinterpret_cast<uint64_t>(&cuda_emu_fiber_trampoline);
  uint64_t* regs = slot - 6;
  for (int k = 0; k < 6; ++k) regs[k] = 0;
  uint32_t* control = reinterpret_cast<uint32_t*>(regs - 1);
  control[0] = 0x1f80;  // mxcsr: all exceptions masked, round to nearest
  control[1] = 0x037f;  // x87 control word: the default
  f.sp = regs - 1;
#else
  f.context.uc_stack.ss_sp = f.stack;
  f.context.uc_stack.ss_size = kStackBytes;
  f.context.uc_link = nullptr;
  makecontext(&f.context, cuda_emu_fiber_main, 0);
#endif
}

void switch_to_scheduler(FiberBlock& b, Fiber& f) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(&f.fake_stack, b.scheduler_stack, b.scheduler_stack_size);
#endif
#if FO_EMU_ASM_SWITCH
  cuda_emu_fiber_switch(&f.sp, b.scheduler_sp);
#else
  swapcontext(&f.context, &b.scheduler);
#endif
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(f.fake_stack, nullptr, nullptr);
#endif
}

void resume(FiberBlock& b, Fiber& f) {
  b.current = &f;
  tl_coords = &f.coords;
#if defined(__SANITIZE_ADDRESS__)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.stack, kStackBytes);
#endif
#if FO_EMU_ASM_SWITCH
  cuda_emu_fiber_switch(&b.scheduler_sp, f.sp);
#else
  swapcontext(&b.scheduler, &f.context);
#endif
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  tl_coords = nullptr;
}

// All threads wait at a barrier: check it is one barrier, compute its result, release them.
void complete_barrier(FiberBlock& b, uint32_t n, const KernelRun& r) {
  const Fiber& first = *b.fibers[0];
  int acc = 0;
  for (uint32_t t = 0; t < n; ++t) {
    Fiber& f = *b.fibers[t];
    if (std::strcmp(f.site, first.site) != 0 || f.op != first.op) {
      fatal(kernel_text(r) + ", block " + block_text(f.coords) + ": threads wait at different barriers (thread " +
            thread_text(first.coords) + " at " + first.site + ", thread " + thread_text(f.coords) + " at " + f.site +
            "): __syncthreads must be reached by every thread of the block");
    }
    acc = reduce(f.op, acc, f.predicate, t == 0);
  }
  for (uint32_t t = 0; t < n; ++t) {
    b.fibers[t]->result = acc;
    b.fibers[t]->state = Fiber::Ready;
  }
}

void run_block_fibers(const KernelRun& r, uint32_t block_linear, uint32_t n, std::mt19937_64& rng) {
  FiberBlock& b = fiber_pool(n);
  b.call = r.call.get();
  tl_block = &b;
  for (uint32_t t = 0; t < n; ++t) {
    Fiber& f = *b.fibers[t];
    f.state = Fiber::Ready;
    f.coords = coords_of(r, block_linear, t);
    prepare_fiber(f);
  }
  const bool in_order = config().thread_order == Order::Forward;
  std::vector<uint32_t> order;
  for (;;) {
    if (in_order) {
      for (uint32_t t = 0; t < n; ++t)
        if (b.fibers[t]->state == Fiber::Ready) resume(b, *b.fibers[t]);
    } else {
      order = make_order(n, config().thread_order, rng);
      for (uint32_t t : order)
        if (b.fibers[t]->state == Fiber::Ready) resume(b, *b.fibers[t]);
    }
    uint32_t done = 0;
    const Fiber* exited = nullptr;
    const Fiber* waiter = nullptr;
    for (uint32_t t = 0; t < n; ++t) {
      const Fiber& f = *b.fibers[t];
      if (f.state == Fiber::Done)
        ++done, exited = exited ? exited : &f;
      else if (f.state == Fiber::AtBarrier)
        waiter = waiter ? waiter : &f;
    }
    if (done == n) break;
    if (done > 0) {
      fatal(kernel_text(r) + ", block " + block_text(exited->coords) + ": thread " + thread_text(exited->coords) +
            " returned while thread " + thread_text(waiter->coords) + " waits at __syncthreads (" + waiter->site +
            "): every thread of a block must reach each barrier");
    }
    complete_barrier(b, n, r);
  }
  tl_block = nullptr;
}

// ---------------------------------------------------------------------------------------
// OS-thread mode

struct OsBarrier {
  std::mutex mutex;
  std::condition_variable cv;
  uint32_t n = 0, waiting = 0, exited = 0;
  uint64_t generation = 0;
  const char* site = nullptr;
  BarrierOp op = BarrierOp::Or;
  int acc = 0, result = 0;
  const KernelRun* run = nullptr;
  const ThreadCoords* first_waiter = nullptr;
};

thread_local OsBarrier* tl_os_barrier = nullptr;

void os_check_exit_deadlock(OsBarrier& b, const ThreadCoords& who) {
  if (b.exited > 0 && b.waiting > 0 && b.waiting + b.exited == b.n) {
    fatal(kernel_text(*b.run) + ", block " + block_text(who) + ": a thread returned while thread " +
          thread_text(*b.first_waiter) + " waits at __syncthreads (" + b.site +
          "): every thread of a block must reach each barrier");
  }
}

int os_arrive(OsBarrier& b, const char* site, int predicate, BarrierOp op) {
  std::unique_lock<std::mutex> lock(b.mutex);
  if (b.waiting == 0) {
    b.site = site;
    b.op = op;
    b.first_waiter = tl_coords;
  } else if (std::strcmp(site, b.site) != 0 || op != b.op) {
    fatal(kernel_text(*b.run) + ", block " + block_text(*tl_coords) + ": threads wait at different barriers (" +
          b.site + " and " + site + "): __syncthreads must be reached by every thread of the block");
  }
  b.acc = reduce(op, b.acc, predicate, b.waiting == 0);
  ++b.waiting;
  os_check_exit_deadlock(b, *tl_coords);
  if (b.waiting == b.n) {
    b.result = b.acc;
    b.waiting = 0;
    ++b.generation;
    b.cv.notify_all();
    return b.result;
  }
  const uint64_t gen = b.generation;
  b.cv.wait(lock, [&] { return b.generation != gen; });
  return b.result;
}

void run_block_threads(const KernelRun& r, uint32_t block_linear, uint32_t n) {
  OsBarrier barrier;
  barrier.n = n;
  barrier.run = &r;
  std::vector<ThreadCoords> coords(n);
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (uint32_t t = 0; t < n; ++t) {
    coords[t] = coords_of(r, block_linear, t);
    threads.emplace_back([&, t] {
      tl_coords = &coords[t];
      tl_run = &r;
      tl_os_barrier = &barrier;
      grant_this_thread(true);
      r.call->run_thread();
      grant_this_thread(false);
      std::lock_guard<std::mutex> lock(barrier.mutex);
      ++barrier.exited;
      os_check_exit_deadlock(barrier, coords[t]);
    });
  }
  for (std::thread& th : threads) th.join();
}

}  // namespace

// The first code a fiber runs: the kernel for its thread, then back to the scheduler for good.
extern "C" __attribute__((visibility("hidden"))) void cuda_emu_fiber_main() {
  FiberBlock& b = *tl_block;
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(nullptr, &b.scheduler_stack, &b.scheduler_stack_size);
#endif
  b.call->run_thread();
  Fiber& f = *b.current;
  f.state = Fiber::Done;
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(nullptr, b.scheduler_stack, b.scheduler_stack_size);
#endif
#if FO_EMU_ASM_SWITCH
  cuda_emu_fiber_switch(&f.sp, b.scheduler_sp);
#else
  setcontext(&b.scheduler);
#endif
  fatal("a finished fiber was resumed");
}

const ThreadCoords& coords() {
  if (!tl_coords) fatal("threadIdx, blockIdx, blockDim or gridDim read outside a kernel");
  return *tl_coords;
}

int syncthreads_reduce(const void* site_ptr, int predicate, int op_code) {
  const char* site = static_cast<const char*>(site_ptr);
  const BarrierOp op = BarrierOp(op_code);
  if (tl_os_barrier) return os_arrive(*tl_os_barrier, site, predicate, op);
  if (!tl_block || !tl_block->current) fatal(std::string("__syncthreads called outside a kernel at ") + site);
  FiberBlock& b = *tl_block;
  Fiber& f = *b.current;
  f.site = site;
  f.predicate = predicate;
  f.op = op;
  f.state = Fiber::AtBarrier;
  switch_to_scheduler(b, f);
  return f.result;
}

void syncthreads(const void* site) { (void)syncthreads_reduce(site, 0, 0); }

void run_kernel(const KernelRun& r) {
  const uint64_t blocks = uint64_t(r.grid.x) * r.grid.y * r.grid.z;
  const uint32_t threads = r.block.x * r.block.y * r.block.z;
  std::mt19937_64 rng(config().seed * 0x9e3779b97f4a7c15ull + r.launch_index);
  std::vector<uint32_t> order = make_order(uint32_t(blocks), config().block_order, rng);
  const KernelRun* outer = tl_run;
  tl_run = &r;
  open_device_memory();
  for (uint32_t block : order) {
    poison_shared_memory();
    if (config().threads == ThreadMode::Fiber)
      run_block_fibers(r, block, threads, rng);
    else
      run_block_threads(r, block, threads);
    ++mutable_counters().blocks;
  }
  close_device_memory();
  tl_run = outer;
  ++mutable_counters().launches;
  check_canaries(("after " + kernel_text(r)).c_str());
}

bool describe_current_thread(char* out, size_t size) {
  if (!tl_run || !tl_coords) return false;
  const ThreadCoords& c = *tl_coords;
  snprintf(out, size, "kernel `%s` launched at %s:%d, block (%u,%u,%u) thread (%u,%u,%u),", tl_run->site.kernel,
           short_path(tl_run->site.file), tl_run->site.line, c.block_idx.x, c.block_idx.y, c.block_idx.z,
           c.thread_idx.x, c.thread_idx.y, c.thread_idx.z);
  return true;
}

}  // namespace cuda_emu
