#include "file_io.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace fo::ckpt {

namespace {

// Linux transfers at most 0x7ffff000 bytes per call; smaller pieces also keep each call short.
constexpr size_t kMaxPerCall = size_t(1) << 30;

[[noreturn]] void fail(const char* what, uint64_t offset, int error) {
  throw std::runtime_error(std::string(what) + " at byte " + std::to_string(offset) +
                           " failed: " + std::strerror(error) + " (errno " + std::to_string(error) + ")");
}

}  // namespace

void write_at(int fd, const void* data, size_t bytes, uint64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::pwrite(fd, p, std::min(bytes, kMaxPerCall), off_t(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("writing", offset, errno);
    }
    if (n == 0) fail("writing", offset, EIO);
    p += n;
    bytes -= size_t(n);
    offset += uint64_t(n);
  }
}

void read_at(int fd, void* data, size_t bytes, uint64_t offset) {
  char* p = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::pread(fd, p, std::min(bytes, kMaxPerCall), off_t(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("reading", offset, errno);
    }
    if (n == 0)
      throw std::runtime_error("the file ended at byte " + std::to_string(offset) +
                               " while reading (it shrank while being read?)");
    p += n;
    bytes -= size_t(n);
    offset += uint64_t(n);
  }
}

}  // namespace fo::ckpt
