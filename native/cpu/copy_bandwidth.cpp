// Host copy bandwidth over the addon's thread pool (see native/common/bandwidth.h).
//
// Two page-aligned buffers from mmap, first touched by the pool in the chunks that the timed
// copies use (so on a NUMA machine a chunk's pages sit near a thread that copies them). Each
// copy is one parallel_for over chunks of kCopyChunkBytes: the threads take chunks from the
// pool's shared counter, as the optimizer loops take theirs, so the figure is what the
// optimizer's own scheduling can reach on a pure copy, pool wake-up included.
//
// Two ways to copy a chunk, timed alternately (one copy each per round, so both see the same
// machine state), after one untimed warm-up copy each:
//  - "memcpy": glibc's memcpy. For chunks this size it uses ordinary stores, so every
//    destination line is first read for ownership (RFO): the memory moves 3 bytes per 2
//    counted, and the figure understates the machine.
//  - "stream": 16-byte loads and non-temporal stores (SSE2, so any x86-64), four pages
//    interleaved as glibc's own large-copy path does (__memmove_*_unaligned_erms'
//    large_memcpy_4x), which keeps several DRAM pages open. No RFO. On a 2-core Xeon VM
//    it measured 43 GB/s against memcpy's 27 GB/s on 1 MiB chunks.
// The faster is the copy bandwidth; on other architectures only memcpy is measured.
#include "../common/bandwidth.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>
#define FO_HAVE_STREAM_COPY 1
#endif

#include "../common/errors.h"
#include "thread_pool.h"

namespace fo::cpu {

namespace {

// 1 MiB per work item: large enough that the pool's shared counter costs nothing, small
// enough that a thread woken late still finds work (a 256 MiB buffer is 256 items).
constexpr size_t kCopyChunkBytes = size_t(1) << 20;
constexpr size_t kPageBytes = 4096;

struct Mapping {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit Mapping(size_t n) : bytes(n) {
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      throw RangeError("copyBandwidth: cannot allocate 2 x " + std::to_string(n) + " bytes of host memory");
    ptr = p;
  }
  ~Mapping() {
    if (ptr) munmap(ptr, bytes);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  unsigned char* data() const { return static_cast<unsigned char*>(ptr); }
};

#ifdef FO_HAVE_STREAM_COPY
// dst and src 16-byte aligned. Whole groups of four pages go through the streaming loop;
// the rest (less than 16 KiB, only at the end of the buffer) through memcpy.
void stream_copy(unsigned char* dst, const unsigned char* src, size_t n) {
  constexpr size_t kGroup = 4 * kPageBytes;
  const size_t whole = n / kGroup * kGroup;
  for (size_t base = 0; base < whole; base += kGroup) {
    for (size_t off = 0; off < kPageBytes; off += 64) {
      for (size_t page = 0; page < 4; ++page) {
        const __m128i* s = reinterpret_cast<const __m128i*>(src + base + page * kPageBytes + off);
        __m128i* d = reinterpret_cast<__m128i*>(dst + base + page * kPageBytes + off);
        const __m128i a = _mm_load_si128(s), b = _mm_load_si128(s + 1), c = _mm_load_si128(s + 2),
                      e = _mm_load_si128(s + 3);
        _mm_stream_si128(d, a);
        _mm_stream_si128(d + 1, b);
        _mm_stream_si128(d + 2, c);
        _mm_stream_si128(d + 3, e);
      }
    }
  }
  _mm_sfence();  // non-temporal stores are weakly ordered: drain them before the pool's join
  if (whole < n) std::memcpy(dst + whole, src + whole, n - whole);
}
#endif

}  // namespace

BandwidthResult copy_bandwidth(size_t bytes, int iterations) {
  check_bandwidth_args(bytes, iterations);

  const size_t mapped = (bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
  Mapping src(mapped), dst(mapped);
  ThreadPool& pool = ThreadPool::instance();
  const int64_t chunks = int64_t((bytes + kCopyChunkBytes - 1) / kCopyChunkBytes);
  auto chunk_range = [&](int64_t c, size_t& begin, size_t& len) {
    begin = size_t(c) * kCopyChunkBytes;
    len = std::min(kCopyChunkBytes, bytes - begin);
  };

  // First touch: fault every page in now (not inside a timed copy), from the pool.
  pool.parallel_for(chunks, [&](int64_t c) {
    size_t b, n;
    chunk_range(c, b, n);
    std::memset(src.data() + b, int(0x3c + (c & 7)), n);
    std::memset(dst.data() + b, 0, n);
  });

  struct Method {
    const char* name;
    void (*copy)(unsigned char*, const unsigned char*, size_t);
    std::vector<double> seconds;
  };
  std::vector<Method> methods;
#ifdef FO_HAVE_STREAM_COPY
  methods.push_back({"stream", stream_copy, {}});
#endif
  methods.push_back({"memcpy", [](unsigned char* d, const unsigned char* s, size_t n) { std::memcpy(d, s, n); }, {}});

  auto copy_once = [&](const Method& m) {
    pool.parallel_for(chunks, [&](int64_t c) {
      size_t b, n;
      chunk_range(c, b, n);
      m.copy(dst.data() + b, src.data() + b, n);
    });
  };

  for (const Method& m : methods) copy_once(m);  // warm-up: TLB, pool threads awake
  for (int i = 0; i < iterations; ++i) {
    for (Method& m : methods) {
      std::memset(dst.data(), 0, std::min(bytes, size_t(4096)));
      const auto t0 = std::chrono::steady_clock::now();
      copy_once(m);
      const auto t1 = std::chrono::steady_clock::now();
      m.seconds.push_back(std::chrono::duration<double>(t1 - t0).count());
      // Every method must really copy (this also keeps the copies observable).
      if (std::memcmp(dst.data(), src.data(), std::min(bytes, size_t(4096))) != 0 ||
          std::memcmp(dst.data() + bytes - 1, src.data() + bytes - 1, 1) != 0)
        throw std::runtime_error(std::string("copyBandwidth: the ") + m.name + " copy did not arrive (internal error)");
    }
  }

  BandwidthResult r;
  r.bytes = bytes;
  r.iterations = iterations;
  r.threads = pool.threads();
  r.chunk_bytes = int64_t(kCopyChunkBytes);
  for (const Method& m : methods) {
    const double best = *std::min_element(m.seconds.begin(), m.seconds.end());
    const double median = median_of(m.seconds);
    r.methods.push_back({m.name, 2.0 * double(bytes) / best / 1e9, 2.0 * double(bytes) / median / 1e9});
    if (r.method.empty() || best < r.best_seconds) {
      r.method = m.name;
      r.best_seconds = best;
      r.median_seconds = median;
    }
  }
  r.best_gbps = 2.0 * double(bytes) / r.best_seconds / 1e9;
  r.median_gbps = 2.0 * double(bytes) / r.median_seconds / 1e9;
  return r;
}

}  // namespace fo::cpu
